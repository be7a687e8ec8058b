"""Pareto plot labels never sit on a point or on each other (checked on the rendered geometry, in pixels)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.transforms import Bbox

from quantkit.report.html import MARKER_AREA, pareto_figure, pareto_png
from quantkit.report.summary import Cell, VariantFacts


def _inputs(points):
    cells = {name: {"psnr": Cell("psnr", name, value, 10)} for name, _, value in points}
    facts = {name: VariantFacts(disk_bytes=int(size * 1e6)) for name, size, _ in points}
    return cells, facts


def _overlaps(points):
    """Every (label, thing it covers) pair on the rendered figure: markers as boxes of the marker's radius."""
    fig = pareto_figure(*_inputs(points))
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    radius = (MARKER_AREA**0.5 / 2) * fig.dpi / 72
    markers = {}
    for name, size, value in points:
        x, y = ax.transData.transform((size, value))
        markers[name] = Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
    labels = {text.get_text(): text.get_window_extent(renderer) for text in ax.texts}
    plt.close(fig)
    assert sorted(labels) == sorted(name for name, _, _ in points)
    hits = [(label, point) for label, box in labels.items() for point, m in markers.items() if box.overlaps(m)]
    hits += [(a, b) for a in labels for b in labels if a < b and labels[a].overlaps(labels[b])]
    return hits


# The README's run: int8_w8a8 and q8_0 sit close together (the old plot put the int8_w8a8 label on q8_0's point).
README_POINTS = [("int8_w8a8", 3.6, 39.51), ("q4_k", 2.7, 32.66), ("q8_0", 3.7, 39.91), ("nf4", 2.0, 25.41)]


def test_close_variants_labels_sit_on_no_point():
    assert _overlaps(README_POINTS) == []


def test_coincident_points_get_labels_apart():
    assert _overlaps([("int8_w8a8", 3.6, 39.5), ("q8_0", 3.6, 39.5), ("nf4", 2.0, 25.0)]) == []


@pytest.mark.parametrize("seed", range(8))
def test_clustered_layouts_keep_labels_off_every_point(seed):
    rng = np.random.default_rng(seed)
    names = ["fp8", "int8_w8a8", "q4_k", "q8_0", "nf4"]
    sizes = rng.choice([2.0, 3.6, 3.7], 5) + rng.normal(0, 0.05, 5)
    values = rng.choice([25.0, 39.5, 40.0], 5) + rng.normal(0, 0.2, 5)
    assert _overlaps(list(zip(names, sizes, values, strict=True))) == []


def test_fewer_than_two_points_make_no_plot():
    assert pareto_png(*_inputs(README_POINTS[:1])) is None
