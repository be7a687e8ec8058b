"""How a gate names itself in errors, and how limit gates decide at the limit and say which side they are on."""

import math
import re

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
    evaluate,
    gate_from_dict,
)


def interval(mean, low, high, **kw):
    return PairedCI(
        metric="lpips", variant="int8_w8a8", reference="", mean_diff=mean, low=low, high=high, n=50,
        method="BCa", confidence=0.95, seed=0, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("gate", "name"),
    [
        (Superior(metric="clip", variant="int8_w8a8"), "clip int8_w8a8 superior"),
        (Superior(metric="clip", variant="int8_w8a8", reference="fp8"), "clip int8_w8a8 - fp8 superior"),
        (
            IncludesZero(metric="ocr", variant="nf4", category="text", margin=0.2),
            "ocr[text] nf4 includes_zero(margin=0.2)",
        ),
        (
            NonInferior(metric="clip", variant="q4_k", reference="fp8", category="people", margin=0.5),
            "clip[people] q4_k - fp8 non_inferior(margin=0.5)",
        ),
        (CILimit(metric="lpips", variant="nf4", limit=0.26), "lpips nf4 ci_limit(limit=0.26)"),
    ],
)
def test_a_gate_names_metric_category_comparison_kind_and_parameters(gate, name):
    assert gate.describe() == name


@pytest.mark.parametrize("cls", [CILimit, MeanLimit])
def test_a_limit_must_be_finite_and_the_error_names_the_gate(cls):
    with pytest.raises(
        StatsError, match=rf"^lpips nf4 {cls.kind}\(limit=nan\): limit must be a finite number, got nan$"
    ):
        cls(metric="lpips", variant="nf4", limit=math.nan)


@pytest.mark.parametrize(
    ("direction", "ci", "passed", "phrase"),
    [
        ("lower", (0.2, 0.1, 0.26), True, "upper bound 0.26 <= 0.26"),
        ("lower", (0.2, 0.1, 0.27), False, "upper bound 0.27 > 0.26"),
        ("higher", (0.3, 0.26, 0.4), True, "lower bound 0.26 >= 0.26"),
        ("higher", (0.3, 0.25, 0.4), False, "lower bound 0.25 < 0.26"),
    ],
)
def test_a_ci_limit_passes_at_the_limit_itself_and_says_which_side_the_bound_is(direction, ci, passed, phrase):
    gate = CILimit(metric="lpips", variant="int8_w8a8", direction=direction, limit=0.26)
    assert gate.decide(interval(*ci)) == (passed, phrase)


@pytest.mark.parametrize(
    ("direction", "mean", "passed", "phrase"),
    [
        ("lower", 0.26, True, "mean 0.26 <= 0.26"),
        ("lower", 0.27, False, "mean 0.27 > 0.26"),
        ("higher", 0.26, True, "mean 0.26 >= 0.26"),
        ("higher", 0.25, False, "mean 0.25 < 0.26"),
    ],
)
def test_a_mean_limit_passes_at_the_limit_itself_and_says_which_side_the_mean_is(direction, mean, passed, phrase):
    gate = MeanLimit(metric="lpips", variant="int8_w8a8", direction=direction, limit=0.26)
    assert gate.decide(interval(mean, mean - 0.05, mean + 0.05)) == (passed, phrase)


@pytest.mark.parametrize(
    ("direction", "ci", "passed", "phrase"),
    [
        ("higher", (0.1, -0.5, 0.4), False, "lower bound -0.50 <= -0.50 margin"),
        ("lower", (0.1, -0.3, 0.5), False, "upper bound 0.50 >= +0.50 margin"),
        ("lower", (0.1, -0.3, 0.3), True, "upper bound 0.30 < +0.50 margin"),
    ],
)
def test_non_inferiority_needs_the_bound_strictly_inside_the_signed_margin(direction, ci, passed, phrase):
    gate = NonInferior(metric="lpips", variant="int8_w8a8", direction=direction, margin=0.5)
    assert gate.decide(interval(*ci)) == (passed, phrase)


@pytest.mark.parametrize(
    ("ci", "passed", "phrase"),
    [
        ((0.0, -0.49, 0.49), True, "within ±0.50"),
        ((0.0, -0.5, 0.3), False, "not within ±0.50"),
        ((0.0, -0.3, 0.5), False, "not within ±0.50"),
    ],
)
def test_equivalence_needs_the_interval_strictly_inside_both_margins(ci, passed, phrase):
    gate = Equivalent(metric="lpips", variant="int8_w8a8", direction="lower", margin=0.5)
    assert gate.decide(interval(*ci)) == (passed, phrase)


def test_equivalence_refuses_a_one_sided_interval_and_a_margin_that_is_not_positive():
    gate = Equivalent(metric="lpips", variant="nf4", direction="lower", margin=0.5)
    with pytest.raises(StatsError, match=r"^lpips nf4 equivalent\(margin=0.5\): needs a two-sided interval, got a one"):
        gate.decide(interval(0.0, -0.1, math.inf, alternative="greater"))
    with pytest.raises(
        StatsError, match=r"^lpips nf4 equivalent\(margin=0\): margin must be a positive number, got 0$"
    ):
        Equivalent(metric="lpips", variant="nf4", margin=0)


@pytest.mark.parametrize("margin", [True, "0.5", math.inf, 0.0, -0.5])
def test_a_margin_must_be_a_positive_finite_number_and_not_a_bool(margin):
    with pytest.raises(StatsError, match=rf"margin must be a positive number, got {re.escape(repr(margin))}$"):
        NonInferior(metric="clip", variant="nf4", margin=margin)


def test_a_category_gate_without_categories_says_so():
    scores = {"nf4": {"clip": {"p1": 1.0, "p2": 2.0}}}
    gate = Superior(metric="clip", variant="nf4", direction="higher", category="text")
    with pytest.raises(
        StatsError, match=r"^a gate is restricted to a prompt category, but no prompt categories were given$"
    ):
        evaluate([gate], scores)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"kind": "superior", "metric": "clip", "variant": "nf4", "margin": 1, "limit": 2},
            "superior gate on clip: unknown field(s) 'limit', 'margin'; "
            "a superior gate takes category, direction, metric, reference, variant",
        ),
        ({"kind": "superior", "variant": "nf4", "limit": 2}, "superior gate on ?: unknown field(s) 'limit'; "),
        ({"kind": "ci_limit", "variant": "nf4"}, "ci_limit gate on ?: missing field(s) limit, metric"),
        ({"kind": "ci_limit", "metric": "lpips"}, "ci_limit gate on lpips: missing field(s) limit, variant"),
    ],
)
def test_a_gate_table_with_wrong_fields_names_its_metric_and_every_wrong_field(spec, message):
    with pytest.raises(StatsError, match="^" + re.escape(message)):
        gate_from_dict(spec)


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ({}, "no scores for variant 'nf4'; scored variants: none"),
        ({"fp8": {}, "int8": {}}, "no scores for variant 'nf4'; scored variants: fp8, int8"),
        ({"nf4": {}}, "variant 'nf4' has no 'clip' scores; its metrics: none"),
        ({"nf4": {"psnr": {}, "lpips": {}}}, "variant 'nf4' has no 'clip' scores; its metrics: lpips, psnr"),
    ],
)
def test_a_gate_on_missing_scores_says_what_was_scored(scores, message):
    gate = Superior(metric="clip", variant="nf4", direction="higher")
    with pytest.raises(StatsError, match="^" + re.escape(message) + "$"):
        evaluate([gate], scores)


@pytest.mark.parametrize(
    ("ci", "shown"),
    [
        ((0.213, 0.181, 0.247), "lpips: int8_w8a8 = 0.21 [95% CI 0.18, 0.25]"),
        ((0.0, 0.0, 0.0), "lpips: int8_w8a8 = 0.00 [95% CI 0.00, 0.00]"),
        ((1.0, 0.004, math.inf), "lpips: int8_w8a8 = 1.00 [95% CI 0.00, inf]"),
    ],
)
def test_a_one_sample_interval_prints_unsigned_with_decimals_for_its_largest_number_and_width(ci, shown):
    assert interval(*ci).describe() == shown


@pytest.mark.parametrize(
    ("direction", "ci", "passed", "phrase"),
    [
        ("higher", (0.3, 0.1, math.inf), True, "lower bound 0.10 > 0"),
        ("higher", (0.3, 0.0, math.inf), False, "lower bound 0.00 <= 0"),
        ("lower", (-0.3, -math.inf, -0.1), True, "upper bound -0.10 < 0"),
        ("lower", (-0.3, -math.inf, 0.0), False, "upper bound 0.00 >= 0"),
    ],
)
def test_superiority_needs_the_bound_strictly_past_zero_and_says_which_side_it_is(direction, ci, passed, phrase):
    gate = Superior(metric="lpips", variant="int8_w8a8", direction=direction)
    assert gate.decide(interval(*ci)) == (passed, phrase)


def test_a_mean_difference_of_exactly_zero_is_not_called_worse():
    gate = IncludesZero(metric="lpips", variant="int8_w8a8", direction="higher")
    assert gate.decide(interval(0.0, 0.1, 0.5)) == (False, "excludes 0 (better)")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"reference": ""}, "clip nf4 superior: 'reference' must be a non-empty string, got ''"),
        ({"category": 3}, "clip[3] nf4 superior: 'category' must be a non-empty string, got 3"),
    ],
)
def test_reference_and_category_are_none_or_a_non_empty_string(fields, message):
    with pytest.raises(StatsError, match="^" + re.escape(message) + "$"):
        Superior(metric="clip", variant="nf4", **fields)


def test_an_includes_zero_margin_must_be_positive():
    with pytest.raises(StatsError, match=r"^clip nf4 includes_zero\(margin=0\): margin must be a positive number"):
        IncludesZero(metric="clip", variant="nf4", margin=0)


def test_a_paired_gate_given_a_one_sample_interval_says_the_interval_has_no_reference():
    gate = Superior(metric="lpips", variant="int8_w8a8", reference="fp8", direction="lower")
    with pytest.raises(StatsError, match=r"was given the interval of lpips int8_w8a8 - \(none\)$"):
        gate.check(interval(-0.3, -math.inf, -0.1))


def test_a_mean_limit_is_not_a_test_so_its_verdict_has_no_adjustment():
    verdict = MeanLimit(metric="lpips", variant="int8_w8a8", direction="lower", limit=0.3).check(
        interval(0.2, 0.1, 0.25), adjustment="holm"
    )
    assert (verdict.adjustment, verdict.confidence) == ("none", None)


@pytest.mark.parametrize(
    ("ci", "shown"),
    [
        # Two bounds: the width (0.0011) asks for 3 decimals, though the mean sits 0.00005 above the lower bound.
        ((0.99695, 0.99690, 0.99800), "lpips: int8_w8a8 = 0.997 [95% CI 0.997, 0.998]"),
        # One bound: the distance from the mean to it is the width.
        ((0.5, 0.4998, math.inf), "lpips: int8_w8a8 = 0.5000 [95% CI 0.4998, inf]"),
        ((0.5, -math.inf, math.inf), "lpips: int8_w8a8 = 0.50 [95% CI -inf, inf]"),
        # Never more than 8 decimals.
        ((0.5, 0.5, 0.5 + 1e-10), "lpips: int8_w8a8 = 0.50000000 [95% CI 0.50000000, 0.50000000]"),
    ],
)
def test_an_interval_prints_as_many_decimals_as_its_width_needs_up_to_eight(ci, shown):
    assert interval(*ci).describe() == shown
