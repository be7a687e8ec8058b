"""Minimum detectable difference and prompts needed follow the normal approximation of the paired test."""

import math

import numpy as np
import pytest

from quantkit.errors import StatsError
from quantkit.stats import minimum_detectable_difference, required_prompts
from quantkit.stats.bootstrap import paired_bootstrap_rows


def spread(sd, n, seed=0):
    d = np.random.default_rng(seed).normal(0, 1, n)
    return (d - d.mean()) / d.std(ddof=1) * sd


def test_mdd_is_z_sum_times_standard_error():
    # (1.959964 + 0.841621) * 1.5 / sqrt(300)
    assert minimum_detectable_difference(spread(1.5, 300)) == pytest.approx(0.242624, rel=1e-5)
    one_sided = minimum_detectable_difference(spread(1.5, 300), two_sided=False)
    assert one_sided == pytest.approx((1.644854 + 0.841621) * 1.5 / math.sqrt(300), rel=1e-5)


def test_required_prompts_inverts_the_mdd():
    d = spread(1.5, 300)
    assert required_prompts(d, minimum_detectable_difference(d) * (1 + 1e-9)) == 300  # up to rounding
    assert required_prompts(d, 0.2) == math.ceil(((1.959964 + 0.841621) * 1.5 / 0.2) ** 2)


def test_more_prompts_and_less_spread_detect_smaller_differences():
    assert minimum_detectable_difference(spread(1.0, 400)) < minimum_detectable_difference(spread(1.0, 100))
    assert minimum_detectable_difference(spread(0.5, 100)) < minimum_detectable_difference(spread(1.0, 100))
    assert minimum_detectable_difference(spread(1.0, 100), alpha=0.01) > minimum_detectable_difference(spread(1.0, 100))


def test_constant_differences_detect_anything():
    assert minimum_detectable_difference([0.5] * 10) == 0.0
    assert required_prompts([0.5] * 10, 0.01) == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([1.0],), {}, "at least 2 per-prompt differences, got 1"),
        (([1.0, float("nan")],), {}, "finite"),
        (([1.0, 2.0],), {"power": 1.0}, "strictly between 0 and 1"),
    ],
)
def test_bad_inputs_are_errors(args, kwargs, match):
    with pytest.raises(StatsError, match=match):
        minimum_detectable_difference(*args, **kwargs)


def test_required_prompts_needs_a_positive_difference():
    with pytest.raises(StatsError, match="must be positive"):
        required_prompts([1.0, 2.0], 0.0)


def test_a_true_difference_of_one_mdd_is_detected_about_80_percent_of_the_time():
    rng = np.random.default_rng(4)
    n, sd = 100, 1.0
    mdd = (1.959964 + 0.841621) * sd / math.sqrt(n)
    reference = rng.normal(30, 2, (400, n))
    variant = reference + mdd + rng.normal(0, sd, (400, n))
    detected = [ci.low > 0 for ci in paired_bootstrap_rows(variant, reference, n_resamples=999, seed=4)]
    assert 0.72 <= np.mean(detected) <= 0.88
