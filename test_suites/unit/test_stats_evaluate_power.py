"""The power check of an includes_zero gate uses the gate's own level and the asked power, and names the n needed."""

import numpy as np
import pytest

from quantkit.stats import IncludesZero, evaluate, minimum_detectable_difference, required_prompts

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
    v = verdict(power_tolerance=0.2)
    needed = required_prompts(DIFFERENCES, 0.2, alpha=0.05, power=0.8)
    assert v.underpowered and v.message.endswith(f"tolerance 0.20 needs n >= {needed}")


def test_a_benchmark_that_detects_exactly_the_tolerance_is_not_underpowered():
    mdd = minimum_detectable_difference(DIFFERENCES, alpha=0.05, power=0.8)
    assert not verdict(power_tolerance=mdd).underpowered
