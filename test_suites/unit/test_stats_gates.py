"""Gates decide on an interval in the metric's good direction and say so in one line a reviewer understands."""

import math

import pytest

from quantkit.errors import StatsError
from quantkit.stats import (
    CILimit,
    Equivalent,
    IncludesZero,
    MeanLimit,
    NonInferior,
    PairedCI,
    Superior,
    gate_from_dict,
)


def interval(mean, low, high, *, alternative="two-sided", confidence=0.95, metric="clip", reference="fp8", **kw):
    return PairedCI(
        metric=metric, variant="int8_w8a8", reference=reference, mean_diff=mean, low=low, high=high, n=300,
        method="BCa", confidence=confidence, seed=0, alternative=alternative, **kw,
    )  # fmt: skip


def gate(cls, direction="higher", metric="clip", reference="fp8", **kw):
    return cls(metric=metric, variant="int8_w8a8", reference=reference, direction=direction, **kw)


def test_failing_includes_zero_reads_as_the_issue_example():
    verdict = gate(IncludesZero).check(interval(-0.41, -0.83, -0.02), adjustment="holm")
    assert not verdict.passed
    assert verdict.message == (
        "clip: int8_w8a8 - fp8 = -0.41 [95% CI -0.83, -0.02] (n=300, BCa, Holm) excludes 0 (worse): "
        "gate includes_zero failed"
    )
    assert verdict.confidence == pytest.approx(0.95) and verdict.adjustment == "holm"


@pytest.mark.parametrize(
    ("direction", "ci", "passed", "phrase"),
    [
        ("higher", (0.1, -0.2, 0.4), True, "includes 0"),
        ("higher", (-0.41, -0.83, -0.02), False, "excludes 0 (worse)"),
        ("higher", (0.5, 0.2, 0.8), False, "excludes 0 (better)"),
        ("lower", (0.5, 0.2, 0.8), False, "excludes 0 (worse)"),
        ("lower", (-0.5, -0.8, -0.2), False, "excludes 0 (better)"),
        ("lower", (0.0, -0.1, 0.1), True, "includes 0"),
    ],
)
def test_includes_zero_passes_exactly_when_the_interval_contains_zero(direction, ci, passed, phrase):
    verdict = gate(IncludesZero, direction).check(interval(*ci))
    assert verdict.passed is passed and f"{phrase}: gate includes_zero" in verdict.message


@pytest.mark.parametrize(
    ("direction", "ci", "passed", "phrase"),
    [
        ("higher", (-0.1, -0.3, math.inf), True, "lower bound -0.30 > -0.50 margin"),
        ("higher", (-0.3, -0.6, math.inf), False, "lower bound -0.60 <= -0.50 margin"),
        ("lower", (0.1, -math.inf, 0.3), True, "upper bound +0.30 < +0.50 margin"),
        ("lower", (0.3, -math.inf, 0.6), False, "upper bound +0.60 >= +0.50 margin"),
    ],
)
def test_non_inferior_reads_the_worst_bound_against_the_margin(direction, ci, passed, phrase):
    alternative = "greater" if direction == "higher" else "less"
    verdict = gate(NonInferior, direction, margin=0.5).check(interval(*ci, alternative=alternative))
    assert verdict.passed is passed
    assert verdict.message.endswith(f"{phrase}: gate non_inferior {'passed' if passed else 'failed'}")


def test_one_sided_gate_reading_a_two_sided_interval_tests_at_half_the_miss_rate():
    verdict = gate(NonInferior, margin=0.5).check(interval(0.0, -0.3, 0.3))
    assert verdict.passed and verdict.confidence == pytest.approx(0.975)


def test_a_bound_that_is_not_there_is_an_error():
    with pytest.raises(StatsError, match="needs the lower bound but the interval is one-sided the other way"):
        gate(NonInferior, margin=0.5).check(interval(0.0, -math.inf, 0.3, alternative="less"))


@pytest.mark.parametrize(
    ("direction", "ci", "passed"),
    [
        ("higher", (0.5, 0.2, math.inf), True),
        ("higher", (0.5, -0.1, math.inf), False),
        ("lower", (-0.5, -math.inf, -0.2), True),
        ("lower", (-0.5, -math.inf, 0.1), False),
    ],
)
def test_superior_needs_the_interval_to_exclude_zero_in_the_good_direction(direction, ci, passed):
    alternative = "greater" if direction == "higher" else "less"
    assert gate(Superior, direction).check(interval(*ci, alternative=alternative)).passed is passed


@pytest.mark.parametrize(
    ("ci", "passed", "phrase"),
    [
        ((0.0, -0.4, 0.4), True, "within ±0.50"),
        ((0.3, -0.1, 0.6), False, "not within ±0.50"),
        ((-0.3, -0.6, 0.1), False, "not within ±0.50"),
    ],
)
@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_equivalent_needs_the_whole_interval_inside_the_margins(direction, ci, passed, phrase):
    verdict = gate(Equivalent, direction, margin=0.5).check(interval(*ci, confidence=0.9))
    assert verdict.passed is passed and f"{phrase}: gate equivalent" in verdict.message
    assert verdict.confidence == pytest.approx(0.95)  # TOST at 5% reads the 90% interval


def test_equivalent_reads_the_one_minus_two_alpha_interval():
    assert gate(Equivalent, margin=1.0).interval_for(0.05) == (pytest.approx(0.9), "two-sided")
    assert gate(NonInferior, margin=1.0).interval_for(0.05) == (0.95, "greater")
    assert gate(NonInferior, "lower", margin=1.0).interval_for(0.05) == (0.95, "less")
    assert gate(IncludesZero).interval_for(0.01) == (0.99, "two-sided")


def test_lpips_upper_bound_limit_reads_as_a_reviewer_expects():
    limit = gate(CILimit, "lower", metric="lpips", reference=None, limit=0.26)
    ok = limit.check(interval(0.21, -math.inf, 0.23, alternative="less", metric="lpips", reference=""))
    assert ok.passed
    assert ok.message == (
        "lpips: int8_w8a8 = 0.21 [95% CI -inf, 0.23] (n=300, BCa, unadjusted) upper bound 0.23 <= 0.26: "
        "gate ci_limit passed"
    )
    bad = limit.check(interval(0.25, -math.inf, 0.28, alternative="less", metric="lpips", reference=""))
    assert not bad.passed and "upper bound 0.28 > 0.26" in bad.message


@pytest.mark.parametrize(
    ("direction", "mean", "passed"), [("higher", 31.0, True), ("higher", 29.0, False), ("lower", 0.1, True)]
)
def test_mean_limit_checks_the_mean_only_and_is_not_a_test(direction, mean, passed):
    verdict = gate(MeanLimit, direction, limit=30.0 if direction == "higher" else 0.2, reference=None).check(
        interval(mean, mean - 5, mean + 5, reference="")
    )
    assert verdict.passed is passed and verdict.confidence is None
    assert "(n=300, BCa) mean" in verdict.message


def test_fallback_method_is_named_in_the_message():
    ci = interval(1.0, 1.0, 1.0, fallback_reason="all equal")
    ci = PairedCI(**{**ci.__dict__, "method": "percentile"})
    assert "(n=300, percentile, BCa undefined, unadjusted)" in gate(IncludesZero).check(ci).message


def test_small_metrics_get_enough_decimals():
    verdict = gate(IncludesZero, metric="ssim").check(interval(-0.0004, -0.0007, -0.0001, metric="ssim"))
    assert "= -0.00040 [95% CI -0.00070, -0.00010]" in verdict.message


def test_category_is_shown_next_to_the_metric():
    ci = interval(0.1, -0.2, 0.4, category="text")
    assert gate(IncludesZero).check(ci).message.startswith("clip[text]: int8_w8a8 - fp8 = +0.10")


def test_gate_refuses_an_interval_of_another_comparison():
    with pytest.raises(StatsError, match="was given the interval of clip int8_w8a8 - nf4"):
        gate(IncludesZero).check(interval(0.1, -0.2, 0.4, reference="nf4"))


def test_gate_from_dict_builds_each_kind():
    spec = {"metric": "clip", "variant": "int8_w8a8", "reference": "fp8", "direction": "higher"}
    assert gate_from_dict({**spec, "kind": "includes_zero", "margin": 0.5}) == gate(IncludesZero, margin=0.5)
    assert gate_from_dict({**spec, "kind": "non_inferior", "margin": 0.5}) == gate(NonInferior, margin=0.5)
    assert gate_from_dict({**spec, "kind": "equivalent", "margin": 0.5}) == gate(Equivalent, margin=0.5)
    assert gate_from_dict({**spec, "kind": "superior"}) == gate(Superior)
    lpips = {"metric": "lpips", "variant": "int8_w8a8", "kind": "ci_limit", "limit": 0.26, "direction": "lower"}
    assert gate_from_dict(lpips) == CILimit(metric="lpips", variant="int8_w8a8", direction="lower", limit=0.26)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"kind": "non_inferior", "margn": 0.5}, r"unknown field\(s\) 'margn'; a non_inferior gate takes"),
        ({"kind": "superior", "margin": 0.5}, r"unknown field\(s\) 'margin'"),
        ({"kind": "non_inferior"}, r"missing field\(s\) margin"),
        ({"kind": "ci_limit"}, r"missing field\(s\) limit"),
        ({"kind": "best"}, "kind must be one of includes_zero, superior"),
        ({"kind": "non_inferior", "margin": -1}, "margin must be a positive number"),
        ({"kind": "mean_limit", "limit": "high"}, "limit must be a finite number"),
        ({"kind": "superior", "direction": "up"}, "direction must be 'higher' or 'lower'"),
        ({"kind": "superior", "metric": ""}, "needs a non-empty string 'metric'"),
    ],
)
def test_gate_from_dict_names_what_is_wrong(spec, match):
    base = {"metric": "clip", "variant": "int8_w8a8", "reference": "fp8"}
    with pytest.raises(StatsError, match=match):
        gate_from_dict({**base, **spec})


def test_gate_without_direction_cannot_decide():
    with pytest.raises(StatsError, match="direction is not set"):
        Superior(metric="clip", variant="int8_w8a8", reference="fp8").check(interval(0.1, 0.05, math.inf))
