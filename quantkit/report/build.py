"""From a scored study (or merged shard scores) to the printed table, the gate verdicts and the report folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quantkit.history import Recording
from quantkit.profiles import GateResults
from quantkit.report.html import write_report
from quantkit.report.summary import VariantFacts, format_table, summarize
from quantkit.report.trend import trend_png
from quantkit.scores import ScoreTable


@dataclasses.dataclass(frozen=True)
class BuiltReport:
    table_text: str  # the study table, then each metric not measured with its reason, once
    verdict_lines: list[tuple[str, str]]  # (passed | failed | skipped, one-line message)
    index: Path
    gates: GateResults | None  # None when the run applies no gates (CI shards)

    @property
    def failed(self) -> int:
        return self.gates.failed if self.gates is not None else 0

    def printed(self) -> str:
        """What the commands print: the table, the not-measured reasons, one line per gate and the gate summary."""
        lines = [self.table_text, *(f"{status.upper():7s} {message}" for status, message in self.verdict_lines)]
        return "\n".join(lines + ([self.gates.summary()] if self.gates is not None else []))


def render(
    table: ScoreTable,
    *,
    reference: str,
    profile: Any,
    out_dir: str | Path,
    title: str,
    settings: Mapping[str, Any],
    facts: Mapping[str, VariantFacts] | None = None,
    images: Mapping[str, Mapping[str, Any]] | None = None,
    captions: Mapping[str, str] | None = None,
    n_resamples: int = 10_000,
    allow_skip: Sequence[str] = (),
    history: Recording | None = None,
) -> BuiltReport:
    """``history``: append this run to the quality history, name where a failing gate last passed and draw the
    trend (a history error is kept in ``history.error``; the report is written all the same)."""
    facts = facts or {}
    cells = summarize(table, reference=reference, n_resamples=n_resamples)
    gates = None if profile is None else profile.evaluate(table, allow_skip=allow_skip, n_resamples=n_resamples)
    trend = None
    if history is not None:
        gates = None if gates is None else history.annotate(gates)
        history.append(table, gates, n_resamples=n_resamples)
        trend = trend_png(history.series())
    lines = [] if gates is None else gates.lines
    if profile is not None:
        settings = {**settings, "gates": f"{profile.name} v{profile.version} ({profile.adjustment})"}
    index = write_report(
        out_dir,
        title=title,
        settings=settings,
        table=table,
        cells=cells,
        facts=facts,
        verdict_lines=lines,
        images=images,
        captions=captions,
        trend=trend,
    )
    text = format_table(cells, facts)
    if table.not_measured:
        text += "\n" + "\n".join(f"not measured: {m}: {r}" for m, r in table.not_measured.items())
    return BuiltReport(text, lines, index, gates)


def build_report(
    study: Any,
    profile: Any,
    *,
    out_dir: str | Path,
    n_resamples: int = 10_000,
    allow_skip: Sequence[str] = (),
    history: Recording | None = None,
) -> BuiltReport:
    """The report of a scored :class:`quantkit.study.Study`, with its images, sizes and latencies."""
    config = study.config
    images = {name: {pid: g.image for pid, g in study.images(name).items()} for name in config.variants}
    facts = {name: study.facts(name) for name in config.variants}
    captions = {p.id: p.raw[:80] for p in study.prompts}
    return render(
        study.table,
        reference=config.reference,
        profile=profile,
        out_dir=out_dir,
        title=f"quantkit study: {config.model}",
        settings=config.settings_dict(),
        facts=facts,
        images=images,
        captions=captions,
        n_resamples=n_resamples,
        allow_skip=allow_skip,
        history=history,
    )
