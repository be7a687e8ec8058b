"""A merge decision for a fraction of the images: a study against main's baseline, optionally gated sequentially.

:func:`run_gated` is what ``quantkit study --baseline DIR`` and ``--sequential`` run. With a baseline
(:mod:`quantkit.baseline`) unchanged variants cost nothing and changed ones also face the profile's ``[baseline]``
gates. With ``sequential`` the prompts are taken in stratified batches (every category in each batch) and the gates
of the variants that changed are decided after each batch by :class:`quantkit.stats.sequential.SequentialGates`;
generation of a variant stops once every gate that involves it is decided, the run once every gate is.
Gates that involve only unchanged variants are re-evaluated on main's scores at once (they reproduce main's
verdicts; no new data is tested). The profile's gates and its baseline gates are two families, each at the
profile's error rate, as in a fixed-size run.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from quantkit.baseline import MAIN_SUFFIX, NEW, UNCHANGED, Baseline, Comparison
from quantkit.profiles import GateProfile, GateResults
from quantkit.stats.sequential import DEFAULT_LOOKS, SequentialGates, stratified_batches


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a gated run decided and what it cost."""

    status: dict[str, str]  # variant -> unchanged | changed | new
    profile: GateResults
    baseline: GateResults | None  # None without a baseline or when no variant changed
    images_generated: int
    calibration_images: int  # prompts generated to calibrate INT8 (0 when unchanged or cached)
    prompts_used: int
    prompts_total: int
    seconds: float

    @property
    def failed(self) -> int:
        return self.profile.failed + (self.baseline.failed if self.baseline is not None else 0)

    def lines(self) -> list[str]:
        """What the command prints: each variant's status, each verdict, the summaries and the cost."""
        out = [f"{name}: {status}" for name, status in self.status.items()]
        for results in (self.profile, self.baseline):
            if results is not None:
                out += [f"{s.upper():7s} {message}" for s, message in results.lines] + [results.summary()]
        out.append(
            f"images generated: {self.images_generated} (+{self.calibration_images} to calibrate); "
            f"prompts used: {self.prompts_used} of {self.prompts_total}; {self.seconds:.1f} s"
        )
        return out


def run_gated(
    study: Any,
    profile: GateProfile,
    baseline: Baseline | None = None,
    *,
    sequential: bool = False,
    looks: int = DEFAULT_LOOKS,
    n_resamples: int = 10_000,
    allow_skip: tuple[str, ...] = (),
) -> Outcome:
    start = time.perf_counter()
    comparison = Comparison(study, baseline) if baseline is not None else None
    config = study.config
    status = comparison.status if comparison else dict.fromkeys(config.variants, NEW)
    order = [config.reference, *(v for v in config.variants if v != config.reference)]
    every = list(study.prompts)

    def score(name: str) -> None:
        comparison.score(name) if comparison else study.scores(name)

    moving = [v for v in order if status[v] != UNCHANGED or status[config.reference] != UNCHANGED]
    if not sequential or not moving:
        for name in order:
            score(name)
        results = profile.evaluate(study.table, allow_skip=allow_skip, n_resamples=n_resamples)
        judged = comparison.evaluate(profile, allow_skip=allow_skip, n_resamples=n_resamples) if comparison else None
        used = len(every) if moving else 0
    else:
        results, judged, used = _sequential(study, profile, comparison, order, moving, looks, allow_skip, n_resamples)
    return Outcome(
        status=dict(status),
        profile=results,
        baseline=judged,
        images_generated=study.cache.stored,
        calibration_images=study.calibration_images,
        prompts_used=used,
        prompts_total=len(every),
        seconds=time.perf_counter() - start,
    )


def _sequential(
    study: Any,
    profile: GateProfile,
    comparison: Comparison | None,
    order: list[str],
    moving: list[str],
    looks: int,
    allow_skip: tuple[str, ...],
    n_resamples: int,
) -> tuple[GateResults, GateResults | None, int]:
    every = list(study.prompts)
    batches = stratified_batches(every, looks)
    sizes = [sum(len(b) for b in batches[: k + 1]) for k in range(len(batches))]
    alpha = 1 - profile.confidence
    seen: list[Any] = []
    plain = baseline_gates = None
    fixed: list[Any] = []
    skipped: list[Any] = []
    baseline_skipped: list[Any] = []
    for batch in batches:
        seen += batch
        study.use_prompts(seen)
        needed = _needed(order, plain, baseline_gates)
        for name in order:
            if name in needed:
                comparison.score(name) if comparison else study.scores(name)
        if plain is None:  # the first look: which gates run, and how
            indices, skipped = profile.split(study.table, allow_skip)
            runnable = [profile.gates[i] for i in indices]
            fixed = [g for g in runnable if not {g["variant"], g.get("reference")} & set(moving)]
            plain = SequentialGates([g for g in runnable if g not in fixed], sizes, study.table.directions, alpha)
        plain.look(study.table.values, study.table.categories)
        if comparison is not None:
            table, gates, found_skipped = comparison.gate_table(
                profile, moving, allow_skip
            )  # the same gates every look
            if baseline_gates is None:
                baseline_skipped = found_skipped
                baseline_gates = SequentialGates(gates, sizes, table.directions, alpha) if gates else None
            if baseline_gates is not None:
                baseline_gates.look(table.values, table.categories)
        if plain.done and (baseline_gates is None or baseline_gates.done):
            break
    used = len(seen)
    study.use_prompts(every)
    for name in order:  # unchanged variants: main's scores on every prompt, for the gates that involve only them
        if name not in moving:
            comparison.score(name)
    fixed_profile = dataclasses.replace(profile, gates=tuple(fixed), parsed=())  # parsed anew from the fixed gates
    fixed_results = fixed_profile.evaluate(study.table, n_resamples=n_resamples)
    verdicts = (*fixed_results.verdicts, *(v for _, v in sorted(plain.verdicts.items())))
    results = GateResults(profile.name, verdicts, tuple(skipped))
    judged = None
    if baseline_gates is not None or baseline_skipped:
        found = (
            () if baseline_gates is None else tuple(baseline_gates.verdicts[i] for i in sorted(baseline_gates.verdicts))
        )
        judged = GateResults(f"{profile.name} [baseline]", found, tuple(baseline_skipped))
    return results, judged, used


def _needed(order: list[str], plain: SequentialGates | None, baseline_gates: SequentialGates | None) -> set[str]:
    """The variants an undecided gate still reads (every variant at the first look, which picks the gates; the
    unchanged ones cost nothing)."""
    if plain is None:
        return set(order)
    names = {n for g in plain.undecided() for n in (g.variant, g.reference) if n}
    if baseline_gates is not None:
        names |= {g.variant for g in baseline_gates.undecided()}
    return {n.removesuffix(MAIN_SUFFIX) for n in names}
