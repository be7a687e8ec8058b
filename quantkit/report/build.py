"""From a scored study (or merged shard scores) to the printed table, the gate verdicts and the report folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quantkit.report.html import write_report
from quantkit.report.summary import VariantFacts, format_table, summarize
from quantkit.scores import ScoreTable


@dataclasses.dataclass(frozen=True)
class BuiltReport:
    table_text: str
    verdict_lines: list[tuple[str, str]]  # (passed | failed | skipped, one-line message)
    index: Path
    failed: int


def gate_lines(profile: Any, table: ScoreTable, n_resamples: int) -> list[tuple[str, str]]:
    """Every gate of ``profile`` as (status, message); an underpowered pass says so in its message."""
    if profile is None:
        return []
    verdicts, skipped = profile.evaluate(table, n_resamples=n_resamples)
    lines = [("passed" if v.passed else "failed", v.message) for v in verdicts]
    return lines + [("skipped", s.message) for s in skipped]


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
) -> BuiltReport:
    facts = facts or {}
    cells = summarize(table, reference=reference, n_resamples=n_resamples)
    lines = gate_lines(profile, table, n_resamples)
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
    )
    text = format_table(cells, facts)
    if table.not_measured:
        text += "\n" + "\n".join(f"not measured: {m}: {r}" for m, r in table.not_measured.items())
    return BuiltReport(text, lines, index, sum(1 for status, _ in lines if status == "failed"))


def build_report(study: Any, profile: Any, *, out_dir: str | Path, n_resamples: int = 10_000) -> BuiltReport:
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
    )
