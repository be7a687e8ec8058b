"""What `adjust` does when called with its defaults, and how it refuses a level or method it cannot use."""

import pytest

from quantkit.errors import StatsError
from quantkit.stats import adjust


def at(p):
    """A hypothesis with p-value ``p``: rejected at every level of at least ``p``."""
    return lambda level: p <= level


def test_the_defaults_are_holm_at_five_percent():
    # Holm rejects 0.02 in its second round (0.05 / 1); Bonferroni would stop at 0.025.
    decisions = adjust([at(0.001), at(0.04)])
    assert [(d.alpha, d.rejected) for d in decisions] == [(0.025, True), (0.05, True)]


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.1])
def test_alpha_must_lie_strictly_between_zero_and_one(alpha):
    with pytest.raises(StatsError, match=rf"^alpha must be strictly between 0 and 1, got {alpha}$"):
        adjust([at(0.01)], alpha)


def test_an_unknown_method_names_the_known_ones():
    with pytest.raises(StatsError, match=r"use one of holm, bonferroni, none$"):
        adjust([at(0.01)], 0.05, "fdr")
