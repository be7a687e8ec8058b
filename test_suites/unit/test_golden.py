"""The golden store and the `quantkit golden` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from quantkit.cli import main
from quantkit.errors import StoreError
from quantkit.pipelines.ideogram4 import PRESETS
from quantkit.store import golden
from quantkit.store.golden import GoldenSet

MADE_BY = {"settings": {"sampler": {"steps": 2}}, "weights_hash": "w" * 64, "code_version": {"quantkit": "0.1.0"}}


def noise_image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8))


@pytest.fixture
def recorded(tmp_path) -> GoldenSet:
    target = GoldenSet("tiny", "demo", tmp_path)
    images = {"a": noise_image(1), "b": noise_image(2)}
    golden.record(target, images, {"a": {"clip": 0.25}, "b": {"clip": 0.5}}, **MADE_BY)
    return target


def test_a_recorded_set_verifies_and_reads_back_losslessly(recorded):
    manifest = golden.verify(recorded)
    assert sorted(manifest["files"]) == ["a.png", "b.png", "scores.json"]
    assert manifest["weights_hash"] == "w" * 64 and manifest["settings"] == MADE_BY["settings"]
    assert np.array_equal(np.asarray(golden.load_images(recorded)["b"]), np.asarray(noise_image(2)))
    assert golden.load_scores(recorded) == {"a": {"clip": 0.25}, "b": {"clip": 0.5}}


def test_verify_catches_a_flipped_byte(recorded):
    path = recorded.dir / "a.png"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"changed: a\.png \(sha256 recorded \w{12}, on disk \w{12}\)"):
        golden.verify(recorded)


def test_verify_names_every_missing_extra_and_changed_file(recorded):
    (recorded.dir / "a.png").unlink()
    (recorded.dir / "c.png").write_bytes(b"stray")
    (recorded.dir / "scores.json").write_text("{}")
    with pytest.raises(StoreError) as err:
        golden.verify(recorded)
    message = str(err.value)
    assert "missing: a.png" in message and "extra: c.png" in message and "changed: scores.json" in message
    assert "quantkit golden update" in message


def test_verify_without_a_manifest_says_how_to_record(tmp_path):
    with pytest.raises(StoreError, match="quantkit golden record"):
        golden.verify(GoldenSet("tiny", "none", tmp_path))


def test_record_refuses_to_overwrite(recorded):
    with pytest.raises(StoreError, match="golden update"):
        golden.record(recorded, {"a": noise_image(3)}, {}, **MADE_BY)


def test_update_rewrites_and_reports_what_changed(recorded):
    change = golden.update(recorded, {"a": noise_image(1), "b": noise_image(9), "c": noise_image(3)}, {}, **MADE_BY)
    assert (change.added, change.removed, change.changed) == (("c",), (), ("b",))
    assert ("a", "clip", 0.25, None) in change.scores
    assert "1 added, 0 removed, 1 changed" in change.summary()
    golden.verify(recorded)
    assert golden.update(recorded, {"a": noise_image(1)}, {}, **MADE_BY).removed == ("b", "c")
    assert sorted(p.name for p in recorded.dir.glob("*.png")) == ["a.png"]


def test_unchanged_update_reports_no_changes(recorded):
    same = golden.update(recorded, {"a": noise_image(1), "b": noise_image(2)}, golden.load_scores(recorded), **MADE_BY)
    assert same.empty and same.summary() == "no changes"


@pytest.mark.parametrize(
    ("images", "scores", "problem"),
    [
        ({}, {}, "no images"),
        ({"a/b": noise_image(1)}, {}, "cannot be a file name"),
        ({"a": noise_image(1)}, {"z": {"clip": 1.0}}, "without an image"),
        ({"a": noise_image(1)}, {"a": {"clip": float("nan")}}, "must be finite"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(tmp_path, images, scores, problem):
    target = GoldenSet("tiny", "demo", tmp_path)
    with pytest.raises(StoreError, match=problem):
        golden.record(target, images, scores, **MADE_BY)
    assert not target.dir.exists()


def shifted_by(levels: int, seed: int = 2, pixels: int = 1) -> Image.Image:
    """``noise_image(seed)`` with its first ``pixels`` red values moved by ``levels`` (down where up would clip)."""
    data = np.asarray(noise_image(seed)).astype(np.int16)
    red = data.reshape(-1, 3)[:pixels, 0]
    data.reshape(-1, 3)[:pixels, 0] = np.where(red + levels > 255, red - levels, red + levels)
    return Image.fromarray(data.astype(np.uint8))


def elsewhere(manifest: dict, **packages: str) -> dict:
    """The recording environment with some package versions changed: what a newer release would look like."""
    changed = json.loads(json.dumps(manifest["environment"]))
    changed["packages"].update(packages)
    return changed


def test_in_the_recording_environment_a_golden_check_is_exact(recorded):
    assert golden.compare(recorded, {"a": noise_image(1), "b": noise_image(2)}).passed
    check = golden.compare(recorded, {"a": noise_image(1), "b": shifted_by(1)})
    assert not check.passed and check.changes == ()
    (problem,) = check.problems
    assert problem.startswith("b: max pixel difference 1 (allowed 0)")
    assert golden.compare(recorded, {"a": noise_image(1)}).problems == ("not generated: b",)


def test_the_manifest_records_versions_cpu_dispatch_and_the_lock(recorded):
    recorded_env = golden.load_manifest(recorded)["environment"]
    assert recorded_env["packages"]["torch"] and recorded_env["packages"]["diffusers"]
    assert {"vendor", "model", "torch_dispatch", "flags", "threads"} <= recorded_env["cpu"].keys()
    assert "lock_sha256" in recorded_env


def test_another_torch_thread_count_is_another_environment(recorded):
    """Parallel reductions split by thread, so the exact check holds only for the recorded thread count."""
    current = json.loads(json.dumps(golden.load_manifest(recorded)["environment"]))
    current["cpu"]["threads"] += 1
    check = golden.compare(recorded, {"a": noise_image(1), "b": shifted_by(1)}, current=current)
    assert check.passed and check.changes == (
        f"torch threads {current['cpu']['threads'] - 1} → {current['cpu']['threads']}",
    )


def test_elsewhere_a_golden_check_allows_the_declared_tolerance_and_says_what_changed(recorded):
    current = elsewhere(golden.load_manifest(recorded), torch="9.9.9")
    check = golden.compare(recorded, {"a": noise_image(1), "b": shifted_by(1)}, current=current)
    assert check.passed and check.max_difference == 1
    assert check.summary().startswith("torch ")
    assert "→ 9.9.9; golden images within tolerance: max diff 1, PSNR " in check.summary()


@pytest.mark.parametrize(
    ("image", "tolerance", "problem"),
    [
        (shifted_by(3), golden.GoldenTolerance(max_pixel_difference=2, min_psnr=0), "max pixel difference 3"),
        (shifted_by(1, pixels=256), golden.GoldenTolerance(max_pixel_difference=2, min_psnr=60), "PSNR 52.9 dB"),
    ],
)
def test_elsewhere_a_real_drift_beyond_the_tolerance_still_fails(recorded, image, tolerance, problem):
    current = elsewhere(golden.load_manifest(recorded), torch="9.9.9")
    check = golden.compare(recorded, {"a": noise_image(1), "b": image}, tolerance=tolerance, current=current)
    assert not check.passed and problem in check.problems[0]
    assert "beyond tolerance" in check.summary()


def test_a_set_recorded_before_fingerprints_is_compared_within_tolerance(recorded):
    manifest_path = recorded.dir / golden.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["environment"]
    manifest_path.write_text(json.dumps(manifest))
    check = golden.compare(recorded, {"a": noise_image(1), "b": shifted_by(2)})
    assert check.passed and check.changes == ("environment not recorded with the golden set",)


@pytest.mark.parametrize("bad", [{"max_pixel_difference": -1}, {"max_pixel_difference": 2.5}, {"min_psnr": "50"}])
def test_a_malformed_tolerance_is_refused(bad):
    with pytest.raises(StoreError, match="golden tolerance"):
        golden.GoldenTolerance(**bad)


def test_golden_command_records_verifies_and_updates_the_tiny_profile_end_to_end(tmp_path, capsys):
    prompts = tmp_path / "smoke.jsonl"
    lines = [
        {"id": "fox", "category": "animals", "raw": "a fox", "caption": '{"high_level_description":"A red fox."}'},
        {"id": "sign", "caption": '{"high_level_description":"A sign that reads OPEN."}', "texts": ["OPEN"]},
    ]
    prompts.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"fox": {"clip": 0.1}, "sign": {"clip": 0.2}}))
    common = ["--root", str(tmp_path / "refs"), "--cache", str(tmp_path / "cache"), "--model", "tiny"]
    make = [
        "--prompts",
        str(prompts),
        "--preset",
        "SMOKE",
        "--resolution",
        "64x64",
        "--max-text-tokens",
        "128",
        *common,
    ]

    assert main(["golden", "record", *make, "--scores", str(scores)]) == 0
    target = GoldenSet("tiny", "smoke", tmp_path / "refs")
    manifest = golden.verify(target)
    assert manifest["settings"]["resolution"] == [64, 64]
    assert manifest["settings"]["sampler"] == {**PRESETS["SMOKE"].to_dict(), "max_sequence_length": 128}
    assert golden.load_scores(target)["sign"] == {"clip": 0.2}

    verify = ["golden", "verify", "--prompt-set", "smoke", "--prompts", str(prompts), *common]
    assert main([*verify, "--regenerate"]) == 0
    assert "2 regenerated images match their references" in capsys.readouterr().out

    data = bytearray((target.dir / "fox.png").read_bytes())
    data[-20] ^= 0xFF
    (target.dir / "fox.png").write_bytes(bytes(data))
    assert main(verify) == 2
    assert "changed: fox.png" in capsys.readouterr().err

    assert main(["golden", "record", *make]) == 2
    assert "golden update" in capsys.readouterr().err
    assert main(["golden", "update", *make, "--scores", str(scores)]) == 2  # the tampered set must be restored first
    (target.dir / "fox.png").unlink()
    (target.dir / "manifest.json").unlink()
    assert main(["golden", "update", *make, "--scores", str(scores)]) == 0
    assert "2 added" in capsys.readouterr().out
    assert main(verify) == 0
