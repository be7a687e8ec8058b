"""Power calculations refuse a level or power outside (0, 1) with one message naming both."""

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
