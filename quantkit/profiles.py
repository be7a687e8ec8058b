"""Gate profiles: the versioned list of gates a run must pass, in ``golden/gates/<name>.toml``.

A profile file has a ``[profile]`` table (``version``, ``description``, ``confidence``, ``adjustment``,
``power_tolerance``, ``allow_skip``) and one ``[[gate]]`` table per gate, in the field names of
:func:`quantkit.stats.gate_from_dict` (``metric``, ``variant``, ``reference``, ``kind``, ``margin``, ``limit``,
``category``, ``direction``). Every name is checked when the profile loads (keys, metrics against the metric catalog,
variants against the known variants), so a typo fails before any generation and never disables a gate.

A gate the run cannot decide is skipped with one of :data:`SKIP_REASONS`. A skip passes only when the profile's
``allow_skip`` or the command line (``--allow-skip``) allows its reason; any other skip fails the run, and so does a
run in which no gate was evaluated: a merge gate never passes by accident.

An optional ``[golden]`` table (``max_pixel_difference``, ``min_psnr``) declares how far the golden reference images
may move in an environment other than the one that recorded them.

An optional ``[baseline]`` table declares the gates of a run against main's baseline (``quantkit study --baseline``,
:mod:`quantkit.baseline`): ``fidelity`` maps psnr/ssim/lpips to the ``ci_limit`` a changed variant's images must keep
against main's own images, ``non_inferior`` maps each quality/text metric to the margin of its non-inferiority to
main's per-prompt scores.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from quantkit.data import GOLDEN_DIR, require
from quantkit.errors import QuantkitError
from quantkit.metrics.catalog import CATALOG
from quantkit.scores import ScoreTable
from quantkit.stats.gates import Gate, gate_from_dict
from quantkit.store.golden import GoldenTolerance

GATES_DIR = GOLDEN_DIR / "gates"
PROFILE_FIELDS = {"version", "description", "confidence", "adjustment", "power_tolerance", "allow_skip"}
GOLDEN_FIELDS = {field.name for field in dataclasses.fields(GoldenTolerance)}
BASELINE_FIELDS = {"fidelity": "ci_limit", "non_inferior": "non_inferior"}  # [baseline] key -> gate kind

WEIGHTS_ABSENT = "weights not on this machine"
VARIANT_NOT_RUN = "variant not run"
METRIC_NOT_REQUESTED = "metric not requested"
NO_SCORES = "no scores for the variant"
SKIP_REASONS = (WEIGHTS_ABSENT, VARIANT_NOT_RUN, METRIC_NOT_REQUESTED, NO_SCORES)


def closest(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'psnr'?)"`` for the closest of ``known``, or the list of them when none is close."""
    known = sorted(known)
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (known: {', '.join(known)})"


def check_skip_reasons(reasons: Iterable[str], where: str) -> tuple[str, ...]:
    """``reasons`` as a tuple, each one of :data:`SKIP_REASONS` (a typo names the closest)."""
    reasons = tuple(reasons)
    for reason in reasons:
        if reason not in SKIP_REASONS:
            raise QuantkitError(f"{where}: unknown skip reason {reason!r}{closest(reason, SKIP_REASONS)}")
    return reasons


@dataclasses.dataclass(frozen=True)
class SkippedGate:
    """A gate the run could not decide: ``reason`` is one of :data:`SKIP_REASONS`, ``detail`` says which part is
    missing (a not-measured metric's long reason is printed once elsewhere and only referred to here); ``index`` is
    the gate's position in its profile."""

    gate: Mapping[str, Any]
    reason: str
    detail: str
    allowed: bool = False
    index: int | None = None
    status = "skipped"  # beside a Verdict's passed / failed: the gate was not evaluated

    @property
    def message(self) -> str:
        g = self.gate
        versus = f" - {g['reference']}" if g.get("reference") else ""
        where = f"[{g['category']}]" if g.get("category") else ""
        text = f"{g['metric']}{where}: {g['variant']}{versus}: gate {g['kind']} skipped: {self.reason} ({self.detail})"
        if not self.allowed:
            text += f'; this skip is not allowed: add "{self.reason}" to allow_skip in the profile or to --allow-skip'
        return text


@dataclasses.dataclass(frozen=True)
class GateResults:
    """Every gate of a run: verdicts of the evaluated ones and the skipped ones with their reason."""

    profile: str
    verdicts: tuple[Any, ...]
    skipped: tuple[SkippedGate, ...]

    @property
    def lines(self) -> list[tuple[str, str]]:
        """(passed | failed | skipped, one-line message); a refused skip and an empty run are failures."""
        lines = [("passed" if v.passed else "failed", v.message) for v in self.verdicts]
        lines += [("skipped" if s.allowed else "failed", s.message) for s in self.skipped]
        if not self.verdicts:
            lines.append(("failed", f"no gate of profile {self.profile} was evaluated: a run must decide at least one"))
        return lines

    @property
    def failed(self) -> int:
        return sum(1 for status, _ in self.lines if status == "failed")

    def summary(self) -> str:
        """``gates: 10 passed, 0 failed, 3 skipped (weights not on this machine: 3)``."""
        passed = sum(1 for v in self.verdicts if v.passed)
        allowed = Counter(s.reason for s in self.skipped if s.allowed)
        why = ", ".join(f"{reason}: {n}" for reason, n in allowed.items())
        skipped = f"{sum(allowed.values())} skipped" + (f" ({why})" if why else "")
        return f"gates ({self.profile}): {passed} passed, {self.failed} failed, {skipped}"


@dataclasses.dataclass(frozen=True)
class GateProfile:
    name: str
    version: str
    description: str
    gates: tuple[Mapping[str, Any], ...]  # as written in the profile; ``parsed`` holds them as Gate objects
    confidence: float = 0.95
    adjustment: str = "holm"
    power_tolerance: float | Mapping[str, float] | None = None
    golden_tolerance: GoldenTolerance = dataclasses.field(default_factory=GoldenTolerance)
    allow_skip: tuple[str, ...] = ()
    parsed: tuple[Gate, ...] = ()
    baseline: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.parsed:  # load_profile parses while it checks; a profile built by hand is parsed here
            object.__setattr__(self, "parsed", tuple(gate_from_dict(g) for g in self.gates))

    def split(self, table: ScoreTable, allow_skip: Sequence[str] = ()) -> tuple[list[int], list[SkippedGate]]:
        """The indices of the gates ``table`` can decide, and the others with the reason they cannot be decided."""
        allowed = set(self.allow_skip) | set(check_skip_reasons(allow_skip, "--allow-skip"))
        runnable, skipped = [], []
        for index, gate in enumerate(self.parsed):
            why = _skip_reason(gate, table)
            if why is None:
                runnable.append(index)
            else:
                skipped.append(SkippedGate(self.gates[index], *why, allowed=why[0] in allowed, index=index))
        return runnable, skipped

    def evaluate(
        self, table: ScoreTable, *, allow_skip: Sequence[str] = (), n_resamples: int = 10_000, seed: int = 0
    ) -> GateResults:
        """Every gate's verdict or skip, each carrying the index of its gate in the profile; the adjustment covers
        exactly the evaluated gates."""
        from quantkit.stats import evaluate

        runnable, skipped = self.split(table, allow_skip)
        verdicts = evaluate(
            [self.parsed[index] for index in runnable],
            table.values,
            categories=table.categories,
            directions=table.directions,
            confidence=self.confidence,
            adjustment=self.adjustment,
            n_resamples=n_resamples,
            seed=seed,
            power_tolerance=self.power_tolerance,
        )
        verdicts = [dataclasses.replace(v, index=runnable[v.index]) for v in verdicts]
        return GateResults(self.name, tuple(verdicts), tuple(skipped))


def _skip_reason(gate: Gate, table: ScoreTable) -> tuple[str, str] | None:
    metric = gate.metric
    if metric in table.not_measured:
        return WEIGHTS_ABSENT, f"see 'not measured: {metric}'"
    compared = [v for v in (gate.variant, gate.reference) if v]
    absent = [v for v in compared if v not in table.values]
    if absent:
        return VARIANT_NOT_RUN, f"{', '.join(absent)} not among the run's variants {', '.join(table.variants)}"
    if metric not in table.directions:
        return METRIC_NOT_REQUESTED, f"no variant of the run has {metric} scores"
    empty = [v for v in compared if not table.scores(v, metric)]
    if empty:
        return NO_SCORES, f"no {metric} scores for {', '.join(empty)}"
    return None


def load_profile(name_or_path: str | Path) -> GateProfile:
    """A profile by name (``tiny``, ``ideogram4``: files in ``golden/gates/``) or by path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        require(f"gate profile {name_or_path!r}")
        path = GATES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in GATES_DIR.glob("*.toml"))
        raise QuantkitError(f"no gate profile {str(name_or_path)!r} (looked for {path}){closest(path.stem, known)}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise QuantkitError(f"gate profile {path} is not valid TOML: {err}") from err
    header = data.get("profile", {})
    unknown = set(header) - PROFILE_FIELDS
    if unknown:
        raise QuantkitError(f"gate profile {path}: unknown [profile] field(s) {', '.join(sorted(unknown))}")
    golden_table = data.get("golden", {})
    if unknown := set(golden_table) - GOLDEN_FIELDS:
        raise QuantkitError(f"gate profile {path}: unknown [golden] field(s) {', '.join(sorted(unknown))}")
    gates = tuple(data.get("gate", []))
    if not gates:
        raise QuantkitError(f"gate profile {path} declares no [[gate]]")
    checked = [_parse_gate(gate) for gate in gates]
    problems = [f"gate #{index + 1}: {problem}" for index, (_, problem) in enumerate(checked) if problem]
    if problems:  # every gate is checked now, so a typo fails before hours of generation
        raise QuantkitError(f"gate profile {path}: {'; '.join(problems)}")
    return GateProfile(
        name=path.stem,
        version=str(header.get("version", "1")),
        description=str(header.get("description", "")),
        gates=gates,
        confidence=float(header.get("confidence", 0.95)),
        adjustment=str(header.get("adjustment", "holm")),
        power_tolerance=header.get("power_tolerance"),
        golden_tolerance=GoldenTolerance(**golden_table),
        allow_skip=check_skip_reasons(header.get("allow_skip", ()), f"gate profile {path}, allow_skip"),
        parsed=tuple(gate for gate, _ in checked),
        baseline=_baseline_section(data.get("baseline", {}), path),
    )


def _baseline_section(table: Mapping[str, Any], path: Path) -> dict[str, dict[str, float]]:
    """The ``[baseline]`` table, checked: known keys, fidelity metrics with limits, quality/text metrics with
    positive margins (each entry must make a valid gate)."""
    from quantkit.metrics import catalog

    if unknown := set(table) - set(BASELINE_FIELDS):
        raise QuantkitError(f"gate profile {path}: unknown [baseline] field(s) {', '.join(sorted(unknown))}")
    allowed = {"fidelity": catalog.names("fidelity"), "non_inferior": catalog.names("quality") + catalog.names("text")}
    for field, entries in table.items():
        if not isinstance(entries, Mapping):
            raise QuantkitError(f"gate profile {path}: [baseline] {field} must map metric names to numbers")
        for metric, value in entries.items():
            if metric not in allowed[field]:
                raise QuantkitError(
                    f"gate profile {path}: [baseline] {field}: {metric!r} is not one of {', '.join(allowed[field])}"
                )
            number = "limit" if field == "fidelity" else "margin"
            spec = {"metric": metric, "variant": "v", "kind": BASELINE_FIELDS[field], number: value}
            try:
                gate_from_dict(spec | ({"reference": "main"} if field == "non_inferior" else {}))
            except QuantkitError as err:
                raise QuantkitError(f"gate profile {path}: [baseline] {field}.{metric}: {err}") from err
    return {field: dict(entries) for field, entries in table.items()}


def _parse_gate(spec: Mapping[str, Any]) -> tuple[Gate | None, str | None]:
    """One gate table parsed, or what is wrong with it: its fields, then its names against what exists."""
    from quantkit.recipes import known_variants

    try:
        gate = gate_from_dict(spec)
    except QuantkitError as err:
        return None, str(err)
    if gate.metric not in CATALOG:
        return None, f"unknown metric {gate.metric!r}{closest(gate.metric, CATALOG)}"
    for field in ("variant", "reference"):
        name = getattr(gate, field)
        if name is not None and name not in known_variants():
            return None, f"unknown {field} {name!r}{closest(name, known_variants())}"
    return gate, None
