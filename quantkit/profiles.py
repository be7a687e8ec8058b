"""Gate profiles: the versioned list of gates a run must pass, in ``golden/gates/<name>.toml``.

A profile file has a ``[profile]`` table (``version``, ``description``, ``confidence``, ``adjustment``,
``power_tolerance``) and one ``[[gate]]`` table per gate, in the field names of
:func:`quantkit.stats.gate_from_dict` (``metric``, ``variant``, ``reference``, ``kind``, ``margin``, ``limit``,
``category``, ``direction``). An optional ``[golden]`` table (``max_pixel_difference``, ``min_psnr``) declares how
far the golden reference images may move in an environment other than the one that recorded them. A gate whose
metric was not measured in the run, or whose variants were not run, is not evaluated; it is listed as skipped with
the reason, so a reader sees what the verdicts do not cover.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quantkit.errors import QuantkitError
from quantkit.scores import ScoreTable
from quantkit.store.golden import GoldenTolerance

GATES_DIR = Path(__file__).resolve().parents[1] / "golden" / "gates"
PROFILE_FIELDS = {"version", "description", "confidence", "adjustment", "power_tolerance"}
GOLDEN_FIELDS = {field.name for field in dataclasses.fields(GoldenTolerance)}


@dataclasses.dataclass(frozen=True)
class SkippedGate:
    gate: Mapping[str, Any]
    reason: str

    @property
    def message(self) -> str:
        g = self.gate
        versus = f" - {g['reference']}" if g.get("reference") else ""
        return f"{g['metric']}: {g['variant']}{versus}: gate {g['kind']} not evaluated: {self.reason}"


@dataclasses.dataclass(frozen=True)
class GateProfile:
    name: str
    version: str
    description: str
    gates: tuple[Mapping[str, Any], ...]
    confidence: float = 0.95
    adjustment: str = "holm"
    power_tolerance: float | Mapping[str, float] | None = None
    golden_tolerance: GoldenTolerance = dataclasses.field(default_factory=GoldenTolerance)

    def split(self, table: ScoreTable) -> tuple[list[Mapping[str, Any]], list[SkippedGate]]:
        """The gates ``table`` can decide, and the others with the reason they cannot be."""
        runnable, skipped = [], []
        for gate in self.gates:
            metric = gate["metric"]
            if metric in table.not_measured:
                skipped.append(SkippedGate(gate, f"{metric} not measured ({table.not_measured[metric]})"))
                continue
            missing = [v for v in (gate["variant"], gate.get("reference")) if v and not table.scores(v, metric)]
            if missing:
                skipped.append(SkippedGate(gate, f"no {metric} scores for {', '.join(missing)} in this run"))
                continue
            runnable.append(gate)
        return runnable, skipped

    def evaluate(self, table: ScoreTable, *, n_resamples: int = 10_000, seed: int = 0) -> tuple[list, list]:
        """(verdicts, skipped gates); the adjustment covers exactly the evaluated gates."""
        from quantkit.stats import evaluate

        runnable, skipped = self.split(table)
        verdicts = evaluate(
            runnable,
            table.values,
            categories=table.categories,
            directions=table.directions,
            confidence=self.confidence,
            adjustment=self.adjustment,
            n_resamples=n_resamples,
            seed=seed,
            power_tolerance=self.power_tolerance,
        )
        return verdicts, skipped


def load_profile(name_or_path: str | Path) -> GateProfile:
    """A profile by name (``tiny``, ``ideogram4``: files in ``golden/gates/``) or by path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = GATES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in GATES_DIR.glob("*.toml")))
        raise QuantkitError(f"no gate profile {name_or_path!r} (looked for {path}); known profiles: {known}")
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
    from quantkit.stats import gate_from_dict

    for index, gate in enumerate(gates):  # validate every gate now, so a typo fails before hours of generation
        try:
            gate_from_dict(gate)
        except QuantkitError as err:
            raise QuantkitError(f"gate profile {path}, gate #{index + 1}: {err}") from err
    return GateProfile(
        name=path.stem,
        version=str(header.get("version", "1")),
        description=str(header.get("description", "")),
        gates=gates,
        confidence=float(header.get("confidence", 0.95)),
        adjustment=str(header.get("adjustment", "holm")),
        power_tolerance=header.get("power_tolerance"),
        golden_tolerance=GoldenTolerance(**golden_table),
    )
