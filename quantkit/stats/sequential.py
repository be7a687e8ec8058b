"""Sequential gating: decide the gates after each batch of prompts and stop as soon as every gate is decided.

Looking at the scores after every batch and stopping when a verdict is clear is a repeated test, so each look must
spend only part of the error rate. Looks happen at information fractions ``t_k = n_k / N`` (prompts so far over the
whole set). The Lan–DeMets spending function of O'Brien–Fleming type,

    alpha(t) = 2 * (1 - Phi(z_{1 - alpha/2} / sqrt(t)))        (alpha(1) = alpha),

spends almost nothing early and most of ``alpha`` at the end, so a run that goes to the end loses little power
against the fixed-size study; ``"pocock"`` (``alpha * ln(1 + (e - 1) t)``) spends evenly and stops sooner on clear
differences. Look ``k`` reads its intervals at the level ``alpha(t_k) - alpha(t_{k-1})`` split equally (Bonferroni)
over the run's statistical gates: by the union bound over looks and gates, the chance that any gate's null
hypothesis is wrongly rejected at any look stays at most ``alpha``, whatever the looks' correlation (a conservative
use of the spent alpha that needs no numerical integration and is exactly reproducible).

At a look a gate is decided when its interval settles it either way: it passes (the gate's own criterion holds at
that look's level), or it fails for certain (even the interval's most favourable end fails the gate; for
``includes_zero``: the interval excludes 0). An ``includes_zero`` gate with a ``margin`` also passes early once its
interval lies inside ``±margin`` (equivalence shown). Undecided gates at the last look get the gate's own verdict at
that look's level; ``mean_limit`` (a plain check, no test) is only decided at the last look. Stopping for a decided
failure can only lower the chance of a wrong pass, so those stops never inflate the error rate.

The intervals are normal-theory (Student t) intervals of the mean per-prompt difference: they are defined at the
tiny levels an early look reads (a bootstrap with 10,000 resamples is not), and the simulation in the slow suite
checks the false-rejection rate. numpy/scipy only.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from quantkit.errors import StatsError
from quantkit.stats.bootstrap import PairedCI
from quantkit.stats.evaluate import Scores, _as_gate, _per_category, _with_direction
from quantkit.stats.gates import Equivalent, Gate, IncludesZero, Verdict

SPENDING = ("obrien_fleming", "pocock")
DEFAULT_LOOKS = 5


def spent(t: float, alpha: float, kind: str = "obrien_fleming") -> float:
    """Cumulative error rate the Lan–DeMets spending function ``kind`` allows by information fraction ``t``."""
    if kind not in SPENDING:
        raise StatsError(f"unknown alpha spending {kind!r}; use one of {', '.join(SPENDING)}")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be strictly between 0 and 1, got {alpha}")
    if t <= 0:
        return 0.0
    t = min(t, 1.0)
    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    return float(2 * norm.sf(norm.isf(alpha / 2) / math.sqrt(t)))


def look_levels(sizes: Sequence[int], alpha: float, kind: str = "obrien_fleming") -> list[float]:
    """The error rate each look may spend, for looks after ``sizes`` prompts (increasing, the last the whole set)."""
    if not sizes or any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] < 1:
        raise StatsError(f"look sizes must be positive and increasing, got {list(sizes)}")
    total = sizes[-1]
    cumulative = [spent(n / total, alpha, kind) for n in sizes]
    return [c - p for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)]


def stratified_batches(items: Sequence[Any], looks: int = DEFAULT_LOOKS) -> list[list[Any]]:
    """``items`` (with a ``category``) split into at most ``looks`` batches that each hold every category, in the
    items' order; a category's items are spread as evenly as the smallest category allows."""
    by_category: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        by_category[item.category].append(item)
    count = max(1, min(looks, *(len(v) for v in by_category.values()))) if by_category else 1
    batches: list[list[Any]] = [[] for _ in range(count)]
    for members in by_category.values():
        for index, part in enumerate(np.array_split(np.arange(len(members)), count)):
            batches[index].extend(members[i] for i in part)
    order = {id(item): i for i, item in enumerate(items)}
    return [sorted(batch, key=lambda item: order[id(item)]) for batch in batches]


def t_interval(gate: Gate, scores: Scores, confidence: float, *, prompts: Sequence[str] | None = None) -> PairedCI:
    """Two-sided Student-t interval of the gate's mean (paired difference when it has a reference) at ``confidence``,
    over ``prompts`` (default: every prompt the compared variants share)."""
    own = scores[gate.variant][gate.metric]
    ref = scores[gate.reference][gate.metric] if gate.reference else None
    ids = [p for p in (prompts if prompts is not None else own) if p in own and (ref is None or p in ref)]
    if len(ids) < 2:
        raise StatsError(f"{gate.describe()}: a sequential look needs at least 2 scored prompts, got {len(ids)}")
    d = np.array([own[p] - (ref[p] if ref is not None else 0.0) for p in ids], dtype=np.float64)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(student_t.isf((1 - confidence) / 2, len(d) - 1)) * sd / math.sqrt(len(d))
    return PairedCI(
        metric=gate.metric,
        variant=gate.variant,
        reference=gate.reference or "",
        mean_diff=mean,
        low=mean - half,
        high=mean + half,
        n=len(d),
        method="t",
        confidence=confidence,
        seed=0,
        n_resamples=0,
        standard_error=sd / math.sqrt(len(d)),
        sd=sd,
        category=gate.category,
    )


@dataclasses.dataclass
class SequentialGates:
    """The gates of one run, decided look by look. ``sizes`` are the prompts seen at each look (the last is the
    whole set); call :meth:`look` once per look with every score so far; :attr:`verdicts` fills as gates decide."""

    gates: Sequence[Gate | Mapping[str, object]]
    sizes: Sequence[int]
    directions: Mapping[str, str] | None = None
    alpha: float = 0.05
    spending: str = "obrien_fleming"
    looked: int = 0
    verdicts: dict[int, Verdict] = dataclasses.field(default_factory=dict)
    decided_at: dict[int, int] = dataclasses.field(default_factory=dict)  # gate index -> prompts it took
    _expanded: list[Gate] | None = None

    def __post_init__(self) -> None:
        self.levels = look_levels(self.sizes, self.alpha, self.spending)

    @property
    def expanded(self) -> list[Gate]:
        if self._expanded is None:
            raise StatsError("the gates are expanded per category at the first look; call look() first")
        return self._expanded

    @property
    def done(self) -> bool:
        return self._expanded is not None and len(self.verdicts) == len(self._expanded)

    def undecided(self) -> list[Gate]:
        """Gates without a verdict yet (every gate before the first look)."""
        if self._expanded is None:
            return [_as_gate(g) for g in self.gates]
        return [g for i, g in enumerate(self._expanded) if i not in self.verdicts]

    def look(self, scores: Scores, categories: Mapping[str, str] | None = None) -> list[Verdict]:
        """Decide what the scores so far settle; returns the verdicts reached at this look."""
        if self.looked >= len(self.sizes):
            raise StatsError(f"all {len(self.sizes)} looks are done")
        if self._expanded is None:
            self._expanded = [
                g
                for spec in self.gates
                for g in _per_category(_with_direction(_as_gate(spec), self.directions), scores, categories)
            ]
        k, last = self.looked, self.looked == len(self.sizes) - 1
        tests = max(1, sum(1 for g in self._expanded if g.is_test))
        level = self.levels[k] / tests
        new = []
        for index, gate in enumerate(self._expanded):
            if index in self.verdicts or (not gate.is_test and not last):
                continue
            confidence = _confidence(gate, level) if gate.is_test else 1 - self.alpha
            ci = t_interval(gate, scores, confidence, prompts=_prompts_of(gate, scores, categories))
            if not last and _decision(gate, ci) is None:
                continue
            verdict = gate.check(ci, adjustment="bonferroni" if gate.is_test else "none")
            how = f"; sequential look {k + 1}/{len(self.sizes)} of {self.spending} alpha spending"
            verdict = dataclasses.replace(verdict, message=verdict.message + how)
            self.verdicts[index] = verdict
            self.decided_at[index] = ci.n
            new.append(verdict)
        self.looked += 1
        return new


def _confidence(gate: Gate, level: float) -> float:
    """The two-sided interval a look reads: ``1 - level`` for includes_zero, else ``1 - 2 level`` (both one-sided
    bounds at ``1 - level``, so a one-sided gate can be settled either way)."""
    return 1 - level if isinstance(gate, IncludesZero) else 1 - 2 * level


def _prompts_of(gate: Gate, scores: Scores, categories: Mapping[str, str] | None) -> list[str] | None:
    """The prompts of the gate's category (None: every prompt) when it names one."""
    if gate.category is None:
        return None
    if categories is None:
        raise StatsError(f"{gate.describe()}: a category gate needs the prompts' categories")
    return [p for p in scores[gate.variant][gate.metric] if categories.get(p) == gate.category]


def _decision(gate: Gate, ci: PairedCI) -> bool | None:
    """True / False when ``ci`` settles the gate either way, None while it does not."""
    passed, _ = gate.decide(ci)
    if isinstance(gate, IncludesZero):
        if not passed:
            return False
        inside = gate.margin is not None and -gate.margin < ci.low and ci.high < gate.margin
        return True if inside else None
    if passed:
        return True
    best = _most_favourable(gate, ci)
    return False if not gate.decide(dataclasses.replace(ci, low=best, high=best))[0] else None


def _most_favourable(gate: Gate, ci: PairedCI) -> float:
    if isinstance(gate, Equivalent):
        return min(max(0.0, ci.low), ci.high)
    return ci.high if gate.direction == "higher" else ci.low


@dataclasses.dataclass(frozen=True)
class OperatingCharacteristics:
    """What a simulation of one gate found: how often it passed and how many prompts a decision took."""

    runs: int
    pass_rate: float
    mean_prompts: float


def simulate(
    gate: Gate | Mapping[str, object],
    *,
    true_difference: float,
    sd: float,
    prompts: int,
    looks: int = DEFAULT_LOOKS,
    runs: int = 1000,
    alpha: float = 0.05,
    spending: str = "obrien_fleming",
    seed: int = 0,
) -> OperatingCharacteristics:
    """Run one paired gate sequentially on ``runs`` synthetic datasets of normal per-prompt differences (mean
    ``true_difference``, standard deviation ``sd``) and measure its pass rate and the prompts it used on average."""
    gate = _as_gate(gate)
    if gate.reference is None:
        raise StatsError(f"{gate.describe()}: simulate() draws paired differences; give the gate a reference")
    rng = np.random.default_rng(seed)
    sizes = [round(prompts * (k + 1) / looks) for k in range(looks)]
    ids = [f"p{i}" for i in range(prompts)]
    passes, used = 0, 0
    for _ in range(runs):
        diffs = rng.normal(true_difference, sd, prompts)
        run = SequentialGates([gate], sizes, alpha=alpha, spending=spending)
        for n in sizes:
            seen = {
                gate.variant: {gate.metric: dict(zip(ids[:n], diffs[:n].tolist(), strict=True))},
                gate.reference: {gate.metric: dict.fromkeys(ids[:n], 0.0)},
            }
            run.look(seen)
            if run.done:
                break
        passes += run.verdicts[0].passed
        used += run.decided_at[0]
    return OperatingCharacteristics(runs, passes / runs, used / runs)
