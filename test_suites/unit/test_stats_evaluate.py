"""One call turns a run's scores and gate profile into verdicts: adjusted, per category, power-checked."""

import subprocess
import sys

import numpy as np
import pytest

from quantkit.errors import StatsError
from quantkit.stats import IncludesZero, evaluate

N = 120
IDS = [f"p{i:03d}" for i in range(N)]
CATEGORIES = {p: ("text" if i % 2 else "photo") for i, p in enumerate(IDS)}
DIRECTIONS = {"clip": "higher", "lpips": "lower"}


def scores(int8_shift=0.0, nf4_shift=-1.9, text_shift=0.0, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    fp8 = rng.normal(30, 2, N)
    text = np.array([CATEGORIES[p] == "text" for p in IDS])
    return {
        "fp8": {"clip": dict(zip(IDS, fp8, strict=True))},
        "int8_w8a8": {
            "clip": dict(zip(IDS, fp8 + int8_shift + text * text_shift + rng.normal(0, noise, N), strict=True)),
            "lpips": dict(zip(IDS, rng.gamma(4, 0.04, N), strict=True)),
        },
        "nf4": {"clip": dict(zip(IDS, fp8 + nf4_shift + rng.normal(0, noise, N), strict=True))},
    }


def run(gates, table=None, **kw):
    kw = {"categories": CATEGORIES, "directions": DIRECTIONS, "n_resamples": 2000, **kw}
    return evaluate(gates, table or scores(), **kw)


def clip_gate(kind, variant="int8_w8a8", reference="fp8", **kw):
    return {"metric": "clip", "variant": variant, "reference": reference, "kind": kind, **kw}


def test_holds_the_ceiling_and_catches_the_regression():
    v = run([clip_gate("includes_zero"), clip_gate("includes_zero", "nf4"), clip_gate("superior", reference="nf4")])
    assert [x.passed for x in v] == [True, False, True]
    assert v[1].message.startswith("clip: nf4 - fp8 = -1.9")
    assert v[1].message.endswith("(n=120, BCa, Holm) excludes 0 (worse): gate includes_zero failed")


def test_holm_reads_gates_at_family_adjusted_levels():
    gates = [clip_gate("includes_zero"), clip_gate("includes_zero", "nf4"), clip_gate("superior", reference="nf4")]
    holm, bonferroni, none = (run(gates, adjustment=a) for a in ("holm", "bonferroni", "none"))
    # nf4's regression and int8's superiority are rejected in round one (alpha/3); int8 vs fp8 stays, at alpha/1.
    assert [x.confidence for x in holm] == pytest.approx([0.95, 1 - 0.05 / 3, 1 - 0.05 / 3])
    assert [x.confidence for x in bonferroni] == pytest.approx([1 - 0.05 / 3] * 3)
    assert [x.confidence for x in none] == pytest.approx([0.95] * 3)
    assert "[95% CI" in holm[0].message and ", Holm)" in holm[0].message
    assert "[98.33% CI" in bonferroni[0].message and ", Bonferroni)" in bonferroni[0].message
    assert [x.adjustment for x in holm] == ["holm"] * 3


def test_stronger_adjustment_widens_the_interval_each_gate_reads():
    gates = [clip_gate("includes_zero"), clip_gate("non_inferior", margin=0.5), clip_gate("equivalent", margin=0.5)]
    plain, strict = run(gates, adjustment="none"), run(gates, adjustment="bonferroni")
    for a, b in zip(plain, strict, strict=True):
        assert b.ci.low <= a.ci.low and a.ci.high <= b.ci.high
    assert plain[2].ci.confidence == pytest.approx(0.90)  # equivalence: TOST reads the 1 - 2 alpha interval


def test_direction_comes_from_the_score_table_and_a_contradiction_is_an_error():
    lpips = {"metric": "lpips", "variant": "int8_w8a8", "kind": "ci_limit", "limit": 0.26}
    (verdict,) = run([lpips])
    assert verdict.passed and "upper bound" in verdict.message and verdict.gate.direction == "lower"
    with pytest.raises(StatsError, match="contradicts the score table"):
        run([{**lpips, "direction": "higher"}])
    with pytest.raises(StatsError, match="no direction given and none recorded"):
        run([lpips], directions={})


def test_mean_limit_stays_out_of_the_family():
    gates = [
        {"metric": "lpips", "variant": "int8_w8a8", "kind": "mean_limit", "limit": 0.1},
        clip_gate("includes_zero"),
    ]
    limit, zero = run(gates, adjustment="bonferroni")
    assert limit.confidence is None and zero.confidence == pytest.approx(0.95)
    assert not limit.passed and "mean 0.1" in limit.message


def test_each_category_gets_its_own_verdict():
    table = scores(text_shift=-1.5)
    v = run([clip_gate("non_inferior", margin=1.0, category="*")], table)
    assert [(x.ci.category, x.passed, x.ci.n) for x in v] == [("photo", True, 60), ("text", False, 60)]
    assert v[1].message.startswith("clip[text]: int8_w8a8 - fp8 = -1.")
    (only_text,) = run([clip_gate("non_inferior", margin=1.0, category="text")], table)
    assert (only_text.ci.category, only_text.passed, only_text.confidence) == ("text", False, 0.95)


def test_each_verdict_names_the_position_of_the_gate_it_came_from():
    """A per-category gate gives several verdicts: ``index`` maps each back to its gate in the profile, so a report
    can group them (the verdict list itself is longer than the gate list)."""
    gates = [clip_gate("includes_zero"), clip_gate("non_inferior", margin=1.0, category="*"), clip_gate("superior")]
    v = run(gates, n_resamples=500)
    assert [(x.index, x.ci.category) for x in v] == [(0, None), (1, "photo"), (1, "text"), (2, None)]


def test_category_errors_name_what_is_missing():
    with pytest.raises(StatsError, match="no prompt is in category 'art'"):
        run([clip_gate("includes_zero", category="art")])
    with pytest.raises(StatsError, match="no prompt categories were given"):
        run([clip_gate("includes_zero", category="*")], categories=None)
    partial = {p: c for p, c in CATEGORIES.items() if p != "p007"}
    with pytest.raises(StatsError, match="p007 have no category"):
        run([clip_gate("includes_zero", category="*")], categories=partial)


def test_missing_variant_or_metric_is_an_error_listing_what_exists():
    with pytest.raises(StatsError, match="no scores for variant 'q4_k'; scored variants: fp8, int8_w8a8, nf4"):
        run([clip_gate("includes_zero", "q4_k")])
    with pytest.raises(StatsError, match="'nf4' has no 'lpips' scores; its metrics: clip"):
        run([{"metric": "lpips", "variant": "nf4", "kind": "ci_limit", "limit": 0.3}])


def test_a_pass_the_benchmark_could_not_have_failed_is_flagged_underpowered():
    noisy = scores(noise=4.0)
    (weak,) = run([clip_gate("includes_zero", margin=0.5)], noisy)
    assert weak.passed and weak.underpowered and weak.mdd > 0.5
    assert "; underpowered: detects only |diff| >= " in weak.message and "tolerance 0.50 needs n >= " in weak.message
    (strong,) = run([clip_gate("includes_zero", margin=2.0)], noisy)
    assert strong.passed and not strong.underpowered and strong.mdd == pytest.approx(weak.mdd)
    (by_metric,) = run([clip_gate("includes_zero")], noisy, power_tolerance={"clip": 0.5})
    assert by_metric.underpowered
    (no_tolerance,) = run([clip_gate("includes_zero")], noisy)
    assert not no_tolerance.underpowered and no_tolerance.mdd == pytest.approx(weak.mdd)


def test_a_failure_is_never_called_underpowered():
    (failed,) = run([clip_gate("includes_zero", "nf4", margin=0.01)])
    assert not failed.passed and not failed.underpowered


def test_gate_objects_and_plain_dicts_are_interchangeable():
    as_object = IncludesZero(metric="clip", variant="int8_w8a8", reference="fp8", direction="higher")
    assert run([as_object]) == run([clip_gate("includes_zero", direction="higher")])


def test_constant_differences_fall_back_in_a_whole_run():
    table = scores()
    table["fp8"]["clip"] = {p: float(round(v)) for p, v in table["fp8"]["clip"].items()}
    table["int8_w8a8"]["clip"] = {p: v + 0.25 for p, v in table["fp8"]["clip"].items()}  # exactly +0.25 each
    (verdict,) = run([clip_gate("superior")], table)
    assert verdict.passed and verdict.ci.method == "percentile" and verdict.ci.fallback_reason
    assert "percentile, BCa undefined" in verdict.message


def test_stats_never_imports_torch():
    code = "import sys, quantkit.stats; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
