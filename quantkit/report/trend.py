"""The report's trend plot: each variant's mean with its 95% CI over the commits of the quality history."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from quantkit.history import Point
from quantkit.metrics.catalog import label
from quantkit.report.html import figure_png

MIN_RUNS = 2  # one run is a point, not a trend


def trend_png(series: Mapping[tuple[str, str], Sequence[Point]]) -> bytes | None:
    """One panel per metric, one line per variant, runs in order on the x axis (labelled by commit); None when no
    series has two runs."""
    return figure_png(trend_figure(series))


def trend_figure(series: Mapping[tuple[str, str], Sequence[Point]]) -> Any:
    shown = {key: points for key, points in series.items() if len(points) >= MIN_RUNS}
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(metric for _, metric in shown))
    variants = list(dict.fromkeys(variant for variant, _ in shown))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    runs = sorted({(p.run_id, p.label) for points in shown.values() for p in points})
    x_of = {run_id: i for i, (run_id, _) in enumerate(runs)}
    fig, axes = plt.subplots(len(metrics), 1, figsize=(6, 2.6 * len(metrics)), dpi=110, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for (variant, m), points in shown.items():
            if m != metric:
                continue
            xs = [x_of[p.run_id] for p in points]
            means = [p.mean for p in points]
            below = [_bar(p.mean - p.ci_low) if p.ci_low is not None else 0.0 for p in points]
            above = [_bar(p.ci_high - p.mean) if p.ci_high is not None else 0.0 for p in points]
            color = colors[variants.index(variant) % len(colors)]  # one colour per variant in every panel
            ax.errorbar(xs, means, yerr=[below, above], marker="o", capsize=3, label=variant, color=color)
        ax.set_ylabel(f"{label(metric)} (mean, 95% CI)")
        ax.set_xticks(range(len(runs)), [label for _, label in runs], rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("commit (run order; + marks a dirty tree)")
    axes[0, 0].set_title("quality history")
    fig.tight_layout()
    return fig


def _bar(length: float) -> float:
    """An error bar's length; an infinite or undefined bound draws none."""
    return length if math.isfinite(length) and length >= 0 else 0.0
