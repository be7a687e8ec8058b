"""Baseline mode: main's image keys, pixels and scores saved once; a branch regenerates only what changed.

A small study (FP8, INT8 and Q8_0, PSNR and SSIM, 2 prompts) is saved as main's baseline once per module. From a
fresh image cache ("a clean tree"), a run against it with nothing changed generates no image, calibrates nothing
and reports every variant unchanged; a planted Q8_0 scale fault (its code, and so its cache keys, differ)
regenerates only Q8_0 and fails its baseline fidelity gate; a change of key that leaves the pixels alone regenerates
Q8_0, finds its images identical and reports it unchanged without scoring (these two regenerate images:
``-m slow``). A damaged or mismatched baseline is a one-line error.
"""

import dataclasses
import json
import shutil

import pytest
import torch

from quantkit import generation as cached
from quantkit.baseline import CHANGED, UNCHANGED, load_baseline, save_baseline
from quantkit.cli import main
from quantkit.codecs import q8_0
from quantkit.errors import QuantkitError, StoreError
from quantkit.merge_gate import run_gated
from quantkit.profiles import load_profile
from quantkit.study import Study, StudyConfig

SKIPS = ("variant not run", "metric not requested")  # the tiny profile gates variants and metrics this run leaves out
CONFIG = StudyConfig(variants=("fp8", "int8_w8a8", "q8_0"), metrics=("psnr", "ssim"), prompt_limit=2)


@pytest.fixture(scope="module")
def main_baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("main")
    study = Study(dataclasses.replace(CONFIG, cache_dir=str(root / "cache")), progress=False)
    study.score_all()
    return save_baseline(study, root / "baseline")


def _study(tmp_path, config=CONFIG):
    return Study(dataclasses.replace(config, cache_dir=str(tmp_path / "fresh-cache")), progress=False)


@pytest.fixture
def q8_0_key_changed(monkeypatch):
    """What an edit to the Q8_0 codec does to the image keys: its quantizer version differs from main's."""
    version = cached.quantizer_version
    monkeypatch.setattr(
        cached, "quantizer_version", lambda variant=None: version(variant) + ("-edited" if variant == "q8_0" else "")
    )


@pytest.fixture
def q8_0_scale_fault(monkeypatch, q8_0_key_changed):
    """Every Q8_0 block's fp16 scale ``d`` x 1.5: the weights decode 1.5 times too large."""
    quantize = q8_0.quantize

    def buggy(w, *, name="tensor"):
        packed = quantize(w, name=name)
        blocks = packed.data.reshape(-1, q8_0.BLOCK_BYTES).clone()
        d = blocks[:, 0:2].contiguous().view(torch.float16).float() * 1.5
        blocks[:, 0:2] = d.half().view(torch.uint8)
        return dataclasses.replace(packed, data=blocks.reshape(packed.data.shape))

    monkeypatch.setattr(q8_0, "quantize", buggy)


def test_an_unchanged_tree_generates_no_image_and_reports_every_variant_unchanged(main_baseline, tmp_path):
    args = ["study", "--variants", "fp8,int8_w8a8,q8_0", "--metrics", "psnr,ssim", "--prompt-limit", "2", "--quiet"]
    args += ["--n-resamples", "1000", "--cache", str(tmp_path / "fresh-cache"), "--out", str(tmp_path / "out")]
    args += [x for reason in SKIPS for x in ("--allow-skip", reason)]
    assert main([*args, "--baseline", str(main_baseline)]) == 0
    result = json.loads((tmp_path / "out" / "merge-gate.json").read_text())
    assert result["status"] == {"fp8": UNCHANGED, "int8_w8a8": UNCHANGED, "q8_0": UNCHANGED}
    assert result["images_generated"] == 0 and result["calibration_images"] == 0 and result["prompts_used"] == 0
    assert "images generated: 0 (+0 to calibrate); prompts used: 0 of 2" in result["lines"][-1]


@pytest.mark.slow
def test_a_planted_q8_0_fault_regenerates_only_q8_0_and_fails_its_baseline_gate(
    main_baseline, tmp_path, q8_0_scale_fault
):
    outcome = run_gated(
        _study(tmp_path), load_profile("tiny"), load_baseline(main_baseline), n_resamples=1000, allow_skip=SKIPS
    )
    assert outcome.status == {"fp8": UNCHANGED, "int8_w8a8": UNCHANGED, "q8_0": CHANGED}
    assert outcome.images_generated == 2  # Q8_0's two prompts; FP8's images come from the baseline
    failed = [v for v in outcome.baseline.verdicts if not v.passed]
    assert {(v.gate.metric, v.gate.variant) for v in failed} == {("psnr", "q8_0"), ("ssim", "q8_0")}
    assert failed[0].message.startswith("psnr: q8_0 = ")
    assert outcome.failed >= 2


@pytest.mark.slow
def test_a_key_change_that_keeps_the_pixels_is_unchanged_without_scoring(main_baseline, tmp_path, q8_0_key_changed):
    study = _study(tmp_path)
    outcome = run_gated(study, load_profile("tiny"), load_baseline(main_baseline), n_resamples=1000, allow_skip=SKIPS)
    assert outcome.status == {"fp8": UNCHANGED, "int8_w8a8": UNCHANGED, "q8_0": UNCHANGED}
    assert outcome.images_generated == 2
    assert outcome.baseline is None and outcome.failed == 0
    scored = list((study.cache.root / "scores").rglob("*.json"))
    assert len(scored) == 4  # main's PSNR and SSIM of the two identical images, stored under their new keys


def test_a_damaged_baseline_is_a_one_line_error(main_baseline, tmp_path):
    damaged = shutil.copytree(main_baseline, tmp_path / "damaged")
    data = damaged / "baseline.json"
    data.write_text(data.read_text().replace('"q8_0"', '"q8_1"', 1))
    with pytest.raises(StoreError, match="does not match its manifest sha256"):
        load_baseline(damaged)
    (damaged / "manifest.json").unlink()
    with pytest.raises(StoreError, match="not a quantkit baseline"):
        load_baseline(damaged)


def test_a_damaged_stored_image_is_refused_when_read(main_baseline, tmp_path):
    damaged = shutil.copytree(main_baseline, tmp_path / "damaged")
    image = next((damaged / "images" / "fp8").glob("*.png"))
    image.write_bytes(image.read_bytes()[:-8])
    baseline = load_baseline(damaged)
    with pytest.raises(StoreError, match="does not match its manifest sha256"):
        baseline.image("fp8", image.stem, _study(tmp_path).cache)


def test_a_baseline_saved_with_other_settings_is_refused(main_baseline, tmp_path):
    other = _study(tmp_path, dataclasses.replace(CONFIG, prompt_limit=3))
    with pytest.raises(StoreError, match=r"other settings: prompt_limit 2 \(baseline\) vs 3"):
        load_baseline(main_baseline).check_matches(other)


def test_saving_again_replaces_the_baseline_in_one_step(main_baseline, tmp_path):
    again = shutil.copytree(main_baseline, tmp_path / "baseline")
    cached_images = main_baseline.parent / "cache"  # main's cache: nothing to generate
    save_baseline(Study(dataclasses.replace(CONFIG, cache_dir=str(cached_images)), progress=False), again, images=False)
    assert [p.name for p in tmp_path.iterdir()] == ["baseline"]  # no staging or old folder left beside it
    assert not load_baseline(again).has_images


def test_the_shipped_profiles_declare_baseline_gates():
    for name in ("tiny", "ideogram4"):
        section = load_profile(name).baseline
        assert section["fidelity"] and section["non_inferior"]


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("fidelty = { psnr = 35.0 }", r"unknown \[baseline\] field\(s\) fidelty"),
        ("fidelity = { clip = 35.0 }", r"fidelity: 'clip' is not one of psnr, ssim, lpips"),
        ("non_inferior = { clip = -0.5 }", r"non_inferior.clip: .*margin must be a positive number"),
        ("non_inferior = 0.5", r"non_inferior must map metric names to numbers"),
    ],
)
def test_a_wrong_baseline_section_fails_when_the_profile_loads(tmp_path, section, error):
    profile = tmp_path / "p.toml"
    gate = '[[gate]]\nmetric = "psnr"\nvariant = "q8_0"\nkind = "ci_limit"\nlimit = 30.0\n'
    profile.write_text(f"{gate}\n[baseline]\n{section}\n")
    with pytest.raises(QuantkitError, match=error):
        load_profile(profile)


def test_baseline_and_sequential_runs_refuse_to_save_a_baseline(tmp_path, capsys):
    args = ["study", "--baseline", str(tmp_path), "--save-baseline", str(tmp_path / "b"), "--out", str(tmp_path)]
    assert main(args) == 2
    assert "not with --no-gates or --save-baseline" in capsys.readouterr().err
