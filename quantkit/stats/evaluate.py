"""One call that turns a run's per-prompt scores and its gate profile into verdicts.

``evaluate`` resamples each compared pair once (per category where asked), decides every statistical gate at the
level the multiple-comparison adjustment assigns it, and checks ``includes_zero`` gates for power: a CI that
includes zero only because the benchmark is too small to see the difference that matters is flagged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from functools import partial

from quantkit.errors import StatsError
from quantkit.stats.bootstrap import PairedBootstrap, PairedCI, name_some
from quantkit.stats.gates import EACH_CATEGORY, Gate, IncludesZero, Verdict, gate_from_dict
from quantkit.stats.multiple import adjust
from quantkit.stats.power import minimum_detectable_difference, required_prompts

Scores = Mapping[str, Mapping[str, Mapping[str, float]]]  # variant -> metric -> prompt id -> value


def evaluate(
    gates: Iterable[Gate | Mapping[str, object]],
    scores: Scores,
    *,
    categories: Mapping[str, str] | None = None,
    directions: Mapping[str, str] | None = None,
    confidence: float = 0.95,
    adjustment: str = "holm",
    n_resamples: int = 10_000,
    method: str = "BCa",
    seed: int = 0,
    power: float = 0.8,
    power_tolerance: float | Mapping[str, float] | None = None,
) -> list[Verdict]:
    """Verdicts for ``gates`` (Gate objects or plain dicts) in order, a ``category="*"`` gate expanded per category;
    each verdict's ``index`` is the position in ``gates`` of the gate it came from.

    ``directions`` (metric -> "higher"/"lower", e.g. ``ScoreTable.directions``) fills in gates that leave the
    direction out. The family-wise error rate across the run's statistical gates is ``1 - confidence``, split by
    ``adjustment`` ("holm", "bonferroni" or "none"). ``power_tolerance`` (one number, or one per metric) is the
    smallest difference that matters for ``includes_zero`` gates without their own ``margin``.
    """
    expanded = [
        (index, g)
        for index, spec in enumerate(gates)
        for g in _per_category(_with_direction(_as_gate(spec), directions), scores, categories)
    ]
    cache = _Resamplings(scores, categories, n_resamples=n_resamples, seed=seed)
    tests = [g for _, g in expanded if g.is_test]
    decisions = iter(adjust([partial(_rejects, g, cache, method) for g in tests], 1 - confidence, adjustment))
    verdicts = []
    for index, gate in expanded:
        boot = cache.get(gate)
        alpha = next(decisions).alpha if gate.is_test else 1 - confidence
        verdict = dataclasses.replace(gate.check(_read(gate, boot, method, alpha), adjustment=adjustment), index=index)
        if isinstance(gate, IncludesZero):
            tolerance = gate.margin if gate.margin is not None else _tolerance_for(gate.metric, power_tolerance)
            verdict = _with_power(verdict, boot, alpha=alpha, power=power, tolerance=tolerance)
        verdicts.append(verdict)
    return verdicts


class _Resamplings:
    """One PairedBootstrap per (metric, variant, reference, category), built on first use."""

    def __init__(self, scores: Scores, categories: Mapping[str, str] | None, *, n_resamples: int, seed: int):
        self.scores, self.categories = scores, categories
        self.n_resamples, self.seed = n_resamples, seed
        self._boots: dict[tuple[str, str, str | None, str | None], PairedBootstrap] = {}

    def get(self, gate: Gate) -> PairedBootstrap:
        key = (gate.metric, gate.variant, gate.reference, gate.category)
        if key not in self._boots:
            variant = self._subset(_scores_of(self.scores, gate.variant, gate.metric), gate.category)
            reference = None
            if gate.reference is not None:
                reference = self._subset(_scores_of(self.scores, gate.reference, gate.metric), gate.category)
            self._boots[key] = PairedBootstrap(
                variant,
                reference,
                metric=gate.metric,
                variant_name=gate.variant,
                reference_name=gate.reference or "",
                n_resamples=self.n_resamples,
                seed=self.seed,
                category=gate.category,
            )
        return self._boots[key]

    def _subset(self, scores: Mapping[str, float], category: str | None) -> Mapping[str, float]:
        if category is None:
            return scores
        of = _categories_of(self.categories, scores)
        return {p: v for p, v in scores.items() if of[p] == category}


def _rejects(gate: Gate, cache: _Resamplings, method: str, alpha: float) -> bool:
    return gate.rejects(_read(gate, cache.get(gate), method, alpha))


def _read(gate: Gate, boot: PairedBootstrap, method: str, alpha: float) -> PairedCI:
    confidence, alternative = gate.interval_for(alpha)
    return boot.interval(confidence, method=method, alternative=alternative)


def _with_power(
    verdict: Verdict, boot: PairedBootstrap, *, alpha: float, power: float, tolerance: float | None
) -> Verdict:
    """Attach the minimum detectable difference; a pass that could not have seen ``tolerance`` is underpowered."""
    mdd = minimum_detectable_difference(boot.differences, alpha=alpha, power=power)
    underpowered = verdict.passed and tolerance is not None and mdd > tolerance
    message = verdict.message
    if underpowered:
        ci = verdict.ci
        needed = required_prompts(boot.differences, tolerance, alpha=alpha, power=power)
        message += (
            f"; underpowered: detects only |diff| >= {ci.format_value(mdd, signed=False)} at {power:.0%} power, "
            f"tolerance {ci.format_value(tolerance, signed=False)} needs n >= {needed}"
        )
    return dataclasses.replace(verdict, message=message, underpowered=underpowered, mdd=mdd)


def _as_gate(spec: Gate | Mapping[str, object]) -> Gate:
    return spec if isinstance(spec, Gate) else gate_from_dict(spec)


def _with_direction(gate: Gate, directions: Mapping[str, str] | None) -> Gate:
    known = (directions or {}).get(gate.metric)
    if gate.direction is None:
        if known is None:
            raise StatsError(f"{gate.describe()}: no direction given and none recorded for metric {gate.metric!r}")
        return dataclasses.replace(gate, direction=known)
    if known is not None and known != gate.direction:
        raise StatsError(
            f"{gate.describe()}: direction {gate.direction!r} contradicts the score table ({gate.metric} is "
            f"{known}-is-better)"
        )
    return gate


def _per_category(gate: Gate, scores: Scores, categories: Mapping[str, str] | None) -> list[Gate]:
    if gate.category is None:
        return [gate]
    present = sorted(set(_categories_of(categories, _scores_of(scores, gate.variant, gate.metric)).values()))
    if gate.category == EACH_CATEGORY:
        return [dataclasses.replace(gate, category=c) for c in present]
    if gate.category not in present:
        raise StatsError(f"{gate.describe()}: no prompt is in category {gate.category!r}; categories: {present}")
    return [gate]


def _categories_of(categories: Mapping[str, str] | None, prompt_ids: Iterable[str]) -> dict[str, str]:
    if categories is None:
        raise StatsError("a gate is restricted to a prompt category, but no prompt categories were given")
    missing = sorted(p for p in prompt_ids if p not in categories)
    if missing:
        raise StatsError(f"prompt(s) {name_some(missing)} have no category; give every scored prompt a category")
    return {p: categories[p] for p in prompt_ids}


def _scores_of(scores: Scores, variant: str, metric: str) -> Mapping[str, float]:
    if variant not in scores:
        raise StatsError(f"no scores for variant {variant!r}; scored variants: {', '.join(sorted(scores)) or 'none'}")
    if metric not in scores[variant]:
        have = ", ".join(sorted(scores[variant])) or "none"
        raise StatsError(f"variant {variant!r} has no {metric!r} scores; its metrics: {have}")
    return scores[variant][metric]


def _tolerance_for(metric: str, tolerance: float | Mapping[str, float] | None) -> float | None:
    if tolerance is None or isinstance(tolerance, int | float):
        return tolerance
    return tolerance.get(metric)
