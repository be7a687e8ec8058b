"""Fragility: which Linears 8-bit quantization treats worst, and which to keep in bf16.

A layer's fragility is the relative output error it shows when it alone runs naive W8A8 (per-token int8
activations, per-row int8 weights), at its worst denoising step; the calibration hooks measure it on the layer's
real inputs. Ties break on the activation outlier ratio (``max_j max|X_j| / median_j max|X_j|`` at the spikiest
step), then on the name, so the ranking is a pure, deterministic function of the statistics.

``protect`` selects per branch: ``k`` (the ``k`` most fragile), explicit names, or ``"auto"``: the layers above the
widest gap in the sorted scores (a factor of at least ``AUTO_MIN_GAP``, within the top half); none if no such gap.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from quantkit.atomic import write_text
from quantkit.errors import RecipeError

if TYPE_CHECKING:
    from quantkit.calibrate.stats import CalibrationStats, LayerStats

AUTO_MIN_GAP = 2.0

Protect = int | Sequence[str] | str


@dataclasses.dataclass(frozen=True)
class LayerFragility:
    name: str
    error: float  # worst-step relative output error of naive W8A8 on this layer alone
    mean_error: float  # the same, averaged over steps
    outlier_ratio: float  # worst-step max channel absmax over median channel absmax
    worst_step: int
    act_absmax: float

    @classmethod
    def of(cls, name: str, stats: LayerStats) -> LayerFragility:
        errors = stats.relative_error()
        channel_max = stats.absmax
        median = channel_max.median(dim=1).values
        ratios = torch.where(median > 0, channel_max.amax(dim=1) / median.clamp(min=1e-30), 0.0)
        return cls(
            name=name,
            error=float(errors.max()) if errors.numel() else 0.0,
            mean_error=float(errors.mean()) if errors.numel() else 0.0,
            outlier_ratio=float(ratios.max()) if ratios.numel() else 0.0,
            worst_step=int(errors.argmax()) if errors.numel() else 0,
            act_absmax=float(channel_max.max()) if channel_max.numel() else 0.0,
        )


def rank_fragility(stats: CalibrationStats) -> dict[str, list[LayerFragility]]:
    """Per branch, every calibrated Linear, most fragile first."""
    ranking = {}
    for branch, layers in stats.branches.items():
        entries = [LayerFragility.of(name, layer) for name, layer in layers.items()]
        ranking[branch] = sorted(entries, key=lambda e: (-e.error, -e.outlier_ratio, e.name))
    return ranking


def select_protected(ranking: Sequence[LayerFragility], protect: Protect) -> list[str]:
    """The layer names of one branch to keep in bf16, most fragile first (names keep the order given)."""
    names = [entry.name for entry in ranking]
    if isinstance(protect, bool):
        raise RecipeError(f"protect must be a count, a list of layer names or 'auto', got {protect!r}")
    if isinstance(protect, int):
        if not 0 <= protect <= len(names):
            raise RecipeError(f"protect={protect} but the branch has {len(names)} calibrated linears")
        return names[:protect]
    if isinstance(protect, str):
        if protect != "auto":
            raise RecipeError(f"protect must be a count, a list of layer names or 'auto', got {protect!r}")
        return names[: _auto_count([entry.error for entry in ranking])]
    unknown = [name for name in protect if name not in names]
    if unknown:
        raise RecipeError(
            f"cannot protect {unknown[0]!r}: no such calibrated linear (known: {', '.join(names[:5])}, ...)"
        )
    return list(protect)


def _auto_count(errors: Sequence[float]) -> int:
    """Protect everything above the widest multiplicative gap in the top half of the sorted errors."""
    logs = [math.log(max(e, 1e-12)) for e in errors]
    gaps = [logs[i] - logs[i + 1] for i in range(min(len(logs) - 1, len(logs) // 2))]
    if not gaps or max(gaps) < math.log(AUTO_MIN_GAP):
        return 0
    return gaps.index(max(gaps)) + 1


def fragility_report(
    ranking: dict[str, list[LayerFragility]], protected: dict[str, Sequence[str]] | None = None
) -> str:
    """The ranking as Markdown: one table per branch, protected layers marked."""
    protected = protected or {}
    lines = ["# Linear-layer fragility under naive W8A8", ""]
    lines.append("Relative output error of each layer quantized alone (per-token int8 activations, per-row int8")
    lines.append("weights), worst denoising step first; outlier ratio = max / median channel absmax at the worst step.")
    for branch, entries in ranking.items():
        kept = set(protected.get(branch, ()))
        lines += [
            "",
            f"## {branch}",
            "",
            "| rank | layer | worst error | mean error | outlier ratio | worst step | bf16 |",
        ]
        lines.append("|---:|---|---:|---:|---:|---:|:---:|")
        for rank, e in enumerate(entries, 1):
            mark = "yes" if e.name in kept else ""
            lines.append(
                f"| {rank} | `{e.name}` | {e.error:.4g} | {e.mean_error:.4g} | {e.outlier_ratio:.3g} | "
                f"{e.worst_step} | {mark} |"
            )
    return "\n".join(lines) + "\n"


def write_report(
    path: str | os.PathLike[str],
    ranking: dict[str, list[LayerFragility]],
    protected: dict[str, Sequence[str]] | None = None,
) -> None:
    """Write ``path`` (Markdown) and ``path`` with suffix ``.json`` (the same ranking, machine-readable)."""
    path = Path(path)
    write_text(path, fragility_report(ranking, protected))
    payload = {
        "ranking": {branch: [dataclasses.asdict(e) for e in entries] for branch, entries in ranking.items()},
        "protected": {branch: list(names) for branch, names in (protected or {}).items()},
    }
    write_text(path.with_suffix(".json"), json.dumps(payload, indent=2, sort_keys=True) + "\n")
