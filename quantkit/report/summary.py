"""The study table: per variant and metric, the mean and its paired interval against the reference.

Quality and text metrics are scored on each image alone, so the reference's own scores are the baseline: the row
shows the variant's mean and the paired-bootstrap CI of ``variant - reference``. Fidelity metrics already compare
each image with the reference image of the same prompt and seed, so the row shows their mean and its own CI.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from quantkit.errors import StatsError
from quantkit.metrics.catalog import compares_with_reference, label
from quantkit.scores import ScoreTable
from quantkit.stats import PairedCI, mean_bootstrap, paired_bootstrap


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (variant, metric) entry. ``ci`` is the paired difference from the reference (quality, text) or the
    interval of the mean (fidelity); None where no interval applies (the reference row, fewer than two prompts)."""

    metric: str
    variant: str
    mean: float
    n: int
    ci: PairedCI | None = None
    note: str = ""

    def text(self) -> str:
        if self.n == 0:
            return "—"
        mean = _fmt(self.mean)
        if self.ci is None:
            return mean + (f" ({self.note})" if self.note else "")
        ci = self.ci
        if ci.reference:
            diff, low, high = (_fmt(x, signed=True) for x in (ci.mean_diff, ci.low, ci.high))
            return f"{mean} ({diff} [{low}, {high}])"
        return f"{mean} [{_fmt(ci.low)}, {_fmt(ci.high)}]"


@dataclasses.dataclass(frozen=True)
class VariantFacts:
    """What the table shows beside the metrics."""

    disk_bytes: int | None = None
    seconds_per_image: float | None = None


def summarize(
    table: ScoreTable,
    *,
    reference: str,
    variants: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Cell]]:
    """variant -> metric -> :class:`Cell`, in the order of ``variants`` and ``metrics`` (default: the table's)."""
    variants = list(variants or table.variants)
    metrics = [m for m in (metrics or table.metrics) if m in table.directions]
    out: dict[str, dict[str, Cell]] = {}
    for variant in variants:
        row = out.setdefault(variant, {})
        for metric in metrics:
            scores = table.scores(variant, metric)
            row[metric] = _cell(table, variant, metric, scores, reference, n_resamples, confidence, seed)
    return out


def _cell(
    table: ScoreTable,
    variant: str,
    metric: str,
    scores: Mapping[str, float],
    reference: str,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> Cell:
    own_interval = compares_with_reference(metric)  # fidelity: the interval of its own mean, no reference row
    if not scores:
        return Cell(metric, variant, math.nan, 0, note="reference" if own_interval else "")
    mean = sum(scores.values()) / len(scores)
    common = dict(metric=metric, variant_name=variant, confidence=confidence, n_resamples=n_resamples, seed=seed)
    try:
        if own_interval:
            return Cell(metric, variant, mean, len(scores), mean_bootstrap(scores, **common))
        if variant == reference:
            return Cell(metric, variant, mean, len(scores), note="reference")
        ref_scores = table.scores(reference, metric)
        return Cell(
            metric, variant, mean, len(scores), paired_bootstrap(scores, ref_scores, reference_name=reference, **common)
        )
    except StatsError as err:
        return Cell(metric, variant, mean, len(scores), note=f"no CI: {err}")


def _fmt(value: float, *, signed: bool = False) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return ("+" if value > 0 and signed else "") + ("inf" if value > 0 else "-inf")
    digits = 2 if abs(value) >= 10 else 3 if abs(value) >= 1 else 4
    return format(value, ("+" if signed else "") + f".{digits}f")


def format_table(
    cells: Mapping[str, Mapping[str, Cell]],
    facts: Mapping[str, VariantFacts] | None = None,
    *,
    markdown: bool = False,
) -> str:
    """The study table as aligned plain text (terminal) or as a Markdown table."""
    facts = facts or {}
    metrics = list(next(iter(cells.values()), {}))
    header = ["variant", *(label(m) for m in metrics), "disk", "s/img"]
    rows = []
    for variant, row in cells.items():
        f = facts.get(variant, VariantFacts())
        disk = "—" if f.disk_bytes is None else _size(f.disk_bytes)
        latency = "—" if f.seconds_per_image is None else f"{f.seconds_per_image:.2f}"
        rows.append([variant, *(row[m].text() for m in metrics), disk, latency])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


def _size(nbytes: int) -> str:
    if nbytes < 1000:
        return f"{nbytes} B"
    value = nbytes / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.2f} GB"
