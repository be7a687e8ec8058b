"""Multiple-comparison adjustment of the test level across the gates of one run.

Every statistical gate tests a null hypothesis at some level ``alpha_i`` by reading a confidence interval at the
matching confidence: ``includes_zero`` rejects "no difference" (and then fails); ``non_inferior``, ``superior``,
``equivalent`` and ``ci_limit`` reject "the variant is worse than allowed" (and then pass). A run evaluates many such
gates, so the chance that *some* gate decides wrongly grows with their number; the adjustment keeps that
family-wise error rate at ``alpha``.

Each gate is handed to :func:`adjust` as a function ``rejects(level) -> bool``: is its null hypothesis rejected when
its interval is read at test level ``level``? Intervals are nested in the confidence level, so this is monotone in
``level``, and the gate's p-value is the smallest level that rejects. That is all Holm's procedure needs, so no
p-value is ever computed explicitly:

* ``"bonferroni"``: every gate is read at ``alpha / m`` (m = number of statistical gates).
* ``"holm"`` (Holm 1979, sequentially rejective Bonferroni): read every remaining gate at ``alpha / k`` with ``k``
  the number still undecided (at first ``k = m``); the gates that reject are decided (rejected at that level) and
  leave the pool; repeat with the smaller ``k`` until a round rejects nothing; the rest are not rejected, read at
  the last level ``alpha / k``. This rejects exactly the hypotheses that the textbook step-down over sorted p-values
  (``p_(j) <= alpha / (m - j + 1)`` for every ``j`` up to the gate's rank) rejects, because a round at ``alpha / k``
  rejects precisely the not-yet-rejected gates with ``p <= alpha / k``. It is uniformly more powerful than
  Bonferroni and controls the family-wise error rate under any dependence between the gates.
* ``"none"``: every gate at ``alpha``.

The level each gate ends at is the one its verdict reports, so the printed interval is the one that decided it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from quantkit.errors import StatsError

ADJUSTMENTS = ("holm", "bonferroni", "none")
LABELS = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "unadjusted"}


@dataclasses.dataclass(frozen=True)
class Decision:
    """The test level a hypothesis was read at, and whether its null hypothesis was rejected there."""

    alpha: float
    rejected: bool


def adjust(rejects: Sequence[Callable[[float], bool]], alpha: float = 0.05, method: str = "holm") -> list[Decision]:
    """Decide each hypothesis at a family-wise error rate of ``alpha`` (see the module docstring)."""
    if method not in ADJUSTMENTS:
        raise StatsError(f"unknown multiple-comparison adjustment {method!r}; use one of {', '.join(ADJUSTMENTS)}")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be strictly between 0 and 1, got {alpha}")
    m = len(rejects)
    if method == "none" or method == "bonferroni":
        level = alpha if method == "none" else alpha / max(m, 1)
        return [Decision(level, bool(test(level))) for test in rejects]
    decisions: dict[int, Decision] = {}
    remaining = list(range(m))
    while remaining:
        level = alpha / len(remaining)
        newly = [i for i in remaining if rejects[i](level)]
        if not newly:
            break
        decisions.update({i: Decision(level, True) for i in newly})
        remaining = [i for i in remaining if i not in decisions]
    decisions.update({i: Decision(alpha / len(remaining), False) for i in remaining})
    return [decisions[i] for i in range(m)]
