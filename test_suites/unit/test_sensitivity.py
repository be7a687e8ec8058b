"""``quantkit sensitivity`` on a small study: the fast subset of faults is caught, the no-op controls stay quiet.

The full sweep on the default tiny study (every fault, every severity, 20+ controls) is ``-m slow`` and the CLI
command; this runs three faults (a codec scale bug, a Q4_K change that is different but not worse, a harness bug that
compares images with themselves) against a two-gate profile on three prompts.
"""

import json

import pytest

from quantkit import sensitivity
from quantkit.cli import main
from quantkit.profiles import load_profile
from quantkit.study import Study, StudyConfig

PROFILE = """
[profile]
version = "test"
description = "int8 keeps 40 dB of PSNR against fp8"

[[gate]]
metric = "psnr"
variant = "int8_w8a8"
kind = "ci_limit"
limit = 40.0
"""
FAST = ("int8_scale", "q4_k_no_refinement", "fidelity_reference")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("sensitivity")
    (root / "band.toml").write_text(PROFILE)
    config = StudyConfig(
        variants=("fp8", "int8_w8a8"),
        metrics=("psnr",),
        prompt_limit=3,
        calibration_prompts=1,
        cache_dir=str(root / "cache"),
    )
    return config, load_profile(root / "band.toml"), root


@pytest.fixture(scope="module")
def sweep(small):
    config, profile, root = small
    return sensitivity.run_sweep(
        config,
        profile,
        faults=FAST,
        severities="must_catch",
        controls=2,
        expensive_controls=False,
        n_resamples=1000,
        exhaustive=True,
        out=root / "out",
        progress=False,
    )


def test_the_fast_subset_is_caught_and_the_controls_stay_quiet(sweep):
    summary = sweep.summary()
    assert summary["caught_at_must_catch"] == summary["faults_run_at_must_catch"] == 3
    assert summary["false_alarms"] == 0 and summary["control_runs"] == 2
    by = {o.name: o for o in sweep.faults()}
    assert "codec int8" in by["int8_scale"].failed
    assert by["q4_k_no_refinement"].failed == ("codec q4_k",)  # no q4_k image here: only its bytes can tell
    assert by["q4_k_no_refinement"].images == 0
    assert by["fidelity_reference"].failed == ("psnr identity",)  # 100 dB for an image that is not FP8's
    assert by["fidelity_reference"].images == 0  # a harness fault changes scores, not images
    assert by["int8_scale"].images == 3  # only the faulted variant is regenerated


def test_the_report_is_written_in_three_formats(sweep, small):
    out = small[2] / "out"
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["summary"] == sweep.summary()
    assert {o["name"] for o in data["outcomes"]} >= {"unfaulted", "rerun", "prompt_order", *FAST}
    assert "| int8_scale | codec |" in (out / "sensitivity.md").read_text()
    assert "<td>fidelity_reference</td>" in (out / "sensitivity.html").read_text()


def test_sweeps_run_side_by_side_combine_into_one_report(sweep, small):
    loaded = sensitivity.load(small[2] / "out" / "sensitivity.json")
    assert loaded.outcomes == sweep.outcomes
    controls_only = sensitivity.Sweep(sweep.profile, sweep.settings, [*sweep.outcomes[:1], *sweep.controls()], 5.0)
    faults_only = sensitivity.Sweep(sweep.profile, sweep.settings, [*sweep.outcomes[:1], *sweep.faults()], 9.0)
    combined = sensitivity.combine([controls_only, faults_only])
    assert combined.summary() | {"wall_seconds": 0} == sweep.summary() | {"wall_seconds": 0}
    assert combined.seconds == 9.0 and sum(o.kind == "baseline" for o in combined.outcomes) == 1


def test_a_study_with_its_prompts_reordered_scores_the_same(small):
    config = small[0]
    original = [p.id for p in Study(config).prompts]
    orders = {tuple(p.id for p in sensitivity._Reordered.make(config, seed).prompts) for seed in range(4)}
    assert all(sorted(order) == sorted(original) for order in orders) and len(orders) > 1


def test_unknown_fault_names_fail_with_the_closest_name(capsys, tmp_path):
    assert main(["sensitivity", "--faults", "int8_scal", "--quiet", "--out", str(tmp_path)]) == 2
    assert "did you mean 'int8_scale'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_full_sweep_on_the_tiny_study_catches_every_fault_without_false_alarms(tmp_path):
    assert main(["sensitivity", "--out", str(tmp_path), "--quiet"]) == 0
