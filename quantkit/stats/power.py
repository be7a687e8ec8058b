"""How small a difference the benchmark can see, and how many prompts it takes to see a given one.

A CI that includes zero passes just as well when the benchmark is too small to notice anything. These functions
put a number on that, by the normal approximation to the paired test of a mean difference: with ``n`` prompts whose
per-prompt differences have standard deviation ``sd``, a true mean difference ``delta`` is detected (the interval
excludes zero in that direction) with probability ``power`` when

    delta >= (z_{1 - alpha/2} + z_{power}) * sd / sqrt(n)        (two-sided; z_{1 - alpha} one-sided)

The smallest such ``delta`` is the minimum detectable difference (MDD); solving for ``n`` gives the prompts needed.
The bootstrap interval of a mean behaves like this normal interval for the benchmark sizes used here (hundreds of
prompts); for a few dozen prompts the true MDD is somewhat larger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from quantkit.errors import StatsError


def minimum_detectable_difference(
    differences: Sequence[float] | np.ndarray, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> float:
    """The smallest true mean difference this benchmark detects with probability ``power`` at level ``alpha``."""
    sd, n = _sd_and_n(differences)
    return _z_sum(alpha, power, two_sided) * sd / math.sqrt(n)


def required_prompts(
    differences: Sequence[float] | np.ndarray,
    difference: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
) -> int:
    """Prompts needed to detect a true mean difference of ``difference`` (the spread taken from ``differences``)."""
    if not difference > 0:
        raise StatsError(f"the difference to detect must be positive, got {difference}")
    sd, _ = _sd_and_n(differences)
    return max(2, math.ceil((_z_sum(alpha, power, two_sided) * sd / difference) ** 2))


def _z_sum(alpha: float, power: float, two_sided: bool) -> float:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise StatsError(f"alpha and power must lie strictly between 0 and 1, got alpha={alpha}, power={power}")
    return float(norm.ppf(1 - alpha / 2 if two_sided else 1 - alpha) + norm.ppf(power))


def _sd_and_n(differences: Sequence[float] | np.ndarray) -> tuple[float, int]:
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or d.size < 2:
        raise StatsError(f"power needs at least 2 per-prompt differences, got {d.size}")
    if not np.all(np.isfinite(d)):
        raise StatsError("power needs finite per-prompt differences; some are NaN or inf")
    return float(np.std(d, ddof=1)), int(d.size)
