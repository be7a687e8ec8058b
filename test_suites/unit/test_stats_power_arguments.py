"""Power calculations refuse a level or power outside (0, 1) or non-finite differences, and work in float64."""

import numpy as np
import pytest

from quantkit.errors import StatsError
from quantkit.stats import minimum_detectable_difference, required_prompts


@pytest.mark.parametrize(("alpha", "power"), [(0.0, 0.8), (1.0, 0.8), (1.5, 0.8), (0.05, 0.0), (0.05, 1.0)])
def test_alpha_and_power_must_lie_strictly_between_zero_and_one(alpha, power):
    message = rf"^alpha and power must lie strictly between 0 and 1, got alpha={alpha}, power={power}$"
    with pytest.raises(StatsError, match=message):
        minimum_detectable_difference([1.0, 2.0, 4.0], alpha=alpha, power=power)
    with pytest.raises(StatsError, match=message):
        required_prompts([1.0, 2.0, 4.0], 0.5, alpha=alpha, power=power)


def test_non_finite_differences_are_refused():
    with pytest.raises(StatsError, match=r"^power needs finite per-prompt differences; some are NaN or inf$"):
        minimum_detectable_difference([1.0, np.inf])


def test_float32_differences_are_computed_in_float64():
    d = np.random.default_rng(1).normal(0.3, 1.7, 301).astype(np.float32)
    assert minimum_detectable_difference(d) == minimum_detectable_difference(d.astype(np.float64))
