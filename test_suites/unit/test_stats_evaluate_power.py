"""The power check of an includes_zero gate uses the gate's own level and the asked power, and names the n needed."""

import numpy as np
import pytest

from quantkit.stats import CILimit, IncludesZero, evaluate, minimum_detectable_difference, required_prompts

IDS = [f"p{i:02d}" for i in range(40)]
RNG = np.random.default_rng(5)
REFERENCE = RNG.normal(30, 2, len(IDS))
VARIANT = REFERENCE + RNG.normal(0, 1.0, len(IDS))
SCORES = {
    "fp8": {"clip": dict(zip(IDS, REFERENCE, strict=True))},
    "nf4": {"clip": dict(zip(IDS, VARIANT, strict=True))},
}
DIFFERENCES = VARIANT - REFERENCE
GATE = IncludesZero(metric="clip", variant="nf4", reference="fp8", direction="higher")


def verdict(**kw):
    (only,) = evaluate([GATE], SCORES, adjustment="none", n_resamples=500, **kw)
    assert only.passed
    return only


def test_the_minimum_detectable_difference_is_read_at_the_gates_level_and_the_asked_power():
    v = verdict(confidence=0.99, power=0.9)
    assert v.mdd == pytest.approx(minimum_detectable_difference(DIFFERENCES, alpha=0.01, power=0.9))


def test_an_underpowered_pass_says_how_many_prompts_would_see_the_tolerance():
    v = verdict(power_tolerance=0.2, confidence=0.9, power=0.9)
    needed = required_prompts(DIFFERENCES, 0.2, alpha=0.1, power=0.9)
    assert v.underpowered
    assert v.message == (
        f"{v.ci.describe()} (n=40, BCa, unadjusted) includes 0: gate includes_zero passed; underpowered: detects only "
        f"|diff| >= {v.ci.format_value(v.mdd, signed=False)} at 90% power, tolerance 0.20 needs n >= {needed}"
    )
    assert "|diff| >= 0." in v.message  # unsigned, although the interval is of a difference


def test_evaluate_resamples_10000_times_with_seed_0_unless_told_otherwise():
    (default,) = evaluate([GATE], SCORES)
    assert (default.ci.n_resamples, default.ci.seed, default.ci.method) == (10_000, 0, "BCa")
    (told,) = evaluate([GATE], SCORES, n_resamples=300, seed=4, method="percentile")
    assert (told.ci.n_resamples, told.ci.seed, told.ci.method) == (300, 4, "percentile")


def test_a_one_sample_gate_reads_an_interval_without_a_reference_name():
    (own,) = evaluate([CILimit(metric="clip", variant="nf4", direction="higher", limit=0.0)], SCORES, n_resamples=300)
    assert (own.ci.variant, own.ci.reference) == ("nf4", "")


def test_a_benchmark_that_detects_exactly_the_tolerance_is_not_underpowered():
    mdd = minimum_detectable_difference(DIFFERENCES, alpha=0.05, power=0.8)
    assert not verdict(power_tolerance=mdd).underpowered
