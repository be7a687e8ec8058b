"""The report folder: Markdown and one self-contained HTML page (tables, image grid, Pareto plot, OCR by category).

Everything the page shows is embedded (PNG images as data URIs), so it can be uploaded as a CI artifact and opened
anywhere. Images are shown as thumbnails; the full-resolution PNGs live in the image cache.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from quantkit.atomic import write_bytes, write_text
from quantkit.metrics import catalog
from quantkit.report.summary import Cell, VariantFacts, format_table
from quantkit.scores import ScoreTable

THUMBNAIL = 192
PARETO_METRIC_ORDER = ("lpips", "ssim", "psnr", "clip", "pickscore", "hpsv2", "ocr_exact")

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;font-size:.9rem}th{background:#f3f3f3}
.pass{color:#116b11}.fail{color:#b00020;font-weight:600}.skip{color:#777}img{display:block}
.grid td{vertical-align:top;font-size:.75rem}code{background:#f5f5f5;padding:0 .2rem}
"""


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    settings: Mapping[str, Any],
    table: ScoreTable,
    cells: Mapping[str, Mapping[str, Cell]],
    facts: Mapping[str, VariantFacts],
    verdict_lines: Sequence[tuple[str, str]] = (),
    images: Mapping[str, Mapping[str, Image.Image]] | None = None,
    captions: Mapping[str, str] | None = None,
    trend: bytes | None = None,
) -> Path:
    """Write ``report.md``, ``index.html``, ``pareto.png`` and ``scores.json`` to ``out_dir``; returns index.html.

    ``verdict_lines`` are (status, message) pairs with status ``passed``, ``failed`` or ``skipped``; ``images`` maps
    variant -> prompt id -> image for the grid; ``captions`` maps prompt id -> a short label; ``trend`` is the quality
    history's plot (:mod:`quantkit.report.trend`), written as ``trend.png`` and shown on the page.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.save(out / "scores.json")
    pareto = pareto_png(cells, facts)
    if pareto is not None:
        write_bytes(out / "pareto.png", pareto)
    if trend is not None:
        write_bytes(out / "trend.png", trend)
    markdown = _markdown(title, settings, table, cells, facts, verdict_lines)
    if trend is not None:
        markdown += "\n## Quality history\n\n![mean and 95% CI per commit](trend.png)\n"
    write_text(out / "report.md", markdown)
    page = _html(title, settings, table, cells, facts, verdict_lines, images or {}, captions or {}, pareto)
    if trend is not None:
        section = (
            f'<h2>Quality history</h2><img src="{_data_uri(trend)}" alt="quality history: mean and 95% CI per commit">'
        )
        page = page.replace("</body>", section + "</body>", 1)
    write_text(out / "index.html", page)
    return out / "index.html"


def _markdown(title, settings, table, cells, facts, verdict_lines) -> str:
    parts = [f"# {title}", "", _settings_line(settings), "", format_table(cells, facts, markdown=True), ""]
    if table.not_measured:
        parts += ["## Not measured", ""] + [f"- **{m}**: {r}" for m, r in table.not_measured.items()] + [""]
    if verdict_lines:
        parts += ["## Gates", ""] + [f"- {status.upper()}: `{message}`" for status, message in verdict_lines] + [""]
    ocr = ocr_by_category(table)
    if ocr:
        parts += ["## OCR exact match by category", "", _ocr_markdown(ocr), ""]
    return "\n".join(parts)


def _settings_line(settings: Mapping[str, Any]) -> str:
    return "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)


def ocr_by_category(table: ScoreTable) -> dict[str, dict[str, float]]:
    """variant -> category -> mean OCR exact match over that category's text prompts."""
    out: dict[str, dict[str, float]] = {}
    for variant in table.variants:
        by_category: dict[str, list[float]] = {}
        for pid, value in table.scores(variant, "ocr_exact").items():
            by_category.setdefault(table.categories.get(pid, "?"), []).append(value)
        if by_category:
            out[variant] = {c: sum(v) / len(v) for c, v in sorted(by_category.items())}
    return out


def _ocr_markdown(ocr: Mapping[str, Mapping[str, float]]) -> str:
    categories = sorted({c for row in ocr.values() for c in row})
    lines = ["| variant | " + " | ".join(categories) + " |", "|" + "---|" * (len(categories) + 1)]
    for variant, row in ocr.items():
        lines.append(f"| {variant} | " + " | ".join(f"{row[c]:.2f}" if c in row else "—" for c in categories) + " |")
    return "\n".join(lines)


def pareto_png(cells: Mapping[str, Mapping[str, Cell]], facts: Mapping[str, VariantFacts]) -> bytes | None:
    """Quality (the first measured metric of PARETO_METRIC_ORDER) against on-disk size, one point per variant."""
    return figure_png(pareto_figure(cells, facts))


def figure_png(figure: Any) -> bytes | None:
    """A matplotlib figure as PNG bytes (None for no figure), the figure closed so a long run does not keep it."""
    if figure is None:
        return None
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def pareto_figure(cells: Mapping[str, Mapping[str, Cell]], facts: Mapping[str, VariantFacts]) -> Any:
    """The Pareto plot as a matplotlib figure (None with fewer than two points); every label is placed where it
    covers no point and no other label."""
    metric = next((m for m in PARETO_METRIC_ORDER if any(m in row and row[m].n for row in cells.values())), None)
    points = [
        (v, facts[v].disk_bytes / 1e6, row[metric].mean)
        for v, row in cells.items()
        if metric and v in facts and facts[v].disk_bytes and row[metric].n
    ]
    if len(points) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for _, size, value in points:
        ax.scatter(size, value, s=MARKER_AREA)
    ax.margins(0.2)
    ax.set_xlabel("size of the transformers' linear layers (MB)")
    versus = " vs the reference" if catalog.compares_with_reference(metric) else ""
    ax.set_ylabel(f"{catalog.label(metric)}{versus} (mean)")
    ax.set_title("quality versus size")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _place_labels(fig, ax, points)
    return fig


MARKER_AREA = 36  # points^2, matplotlib's default scatter size
# Label offsets from the point (in points), nearest first: right, left, above, below, then the diagonals, further out.
_OFFSETS = [
    (dx * r, dy * r)
    for r in (1, 2, 3, 4)
    for dx, dy in ((6, -3), (-6, -3), (0, 6), (0, -12), (6, 6), (-6, 6), (6, -12), (-6, -12))
]


def _place_labels(fig: Any, ax: Any, points: Sequence[tuple[str, float, float]]) -> None:
    """Try each offset in turn; keep the first whose text box overlaps no marker, no placed label, and stays in
    the figure (the last candidate is kept if none is free, which only happens with many coincident points)."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    radius = (MARKER_AREA**0.5 / 2) * fig.dpi / 72 + 1  # marker radius in pixels, plus a pixel of air
    centres = [ax.transData.transform((size, value)) for _, size, value in points]
    markers = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in centres]
    placed: list[Any] = []
    for name, size, value in points:
        for dx, dy in _OFFSETS:
            label = ax.annotate(
                name,
                (size, value),
                textcoords="offset points",
                xytext=(dx, dy),
                fontsize=8,
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
            )
            box = label.get_window_extent(renderer)
            inside = fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in [*markers, *placed]):
                break
            if (dx, dy) != _OFFSETS[-1]:
                label.remove()
        placed.append(box)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _thumbnail(image: Image.Image) -> str:
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return _data_uri(buffer.getvalue())


def _html(title, settings, table, cells, facts, verdict_lines, images, captions, pareto) -> str:
    e = html.escape
    metrics = list(next(iter(cells.values()), {}))
    head = "".join(f"<th>{e(catalog.label(m))}</th>" for m in metrics)
    rows = []
    for variant, row in cells.items():
        f = facts.get(variant, VariantFacts())
        disk = "—" if f.disk_bytes is None else f"{f.disk_bytes / 1e6:.1f} MB"
        latency = "—" if f.seconds_per_image is None else f"{f.seconds_per_image:.2f}"
        tds = "".join(f"<td>{e(row[m].text())}</td>" for m in metrics)
        rows.append(f"<tr><th>{e(variant)}</th>{tds}<td>{disk}</td><td>{latency}</td></tr>")
    body = [
        f"<h1>{e(title)}</h1><p>{e(_settings_line(settings))}</p>",
        "<h2>Variants</h2><p>Mean per metric; in parentheses the paired difference from the reference with its CI "
        "(quality, text) or the CI of the mean (fidelity to the reference image).</p>",
        f"<table><tr><th>variant</th>{head}<th>disk</th><th>s/img</th></tr>{''.join(rows)}</table>",
    ]
    if table.not_measured:
        items = "".join(f"<li><b>{e(m)}</b>: {e(r)}</li>" for m, r in table.not_measured.items())
        body.append(f"<h2>Not measured</h2><ul>{items}</ul>")
    if verdict_lines:
        items = "".join(f'<li class="{s[:4]}">{e(s.upper())}: <code>{e(m)}</code></li>' for s, m in verdict_lines)
        body.append(f"<h2>Gates</h2><ul>{items}</ul>")
    if pareto is not None:
        body.append(f'<h2>Quality versus size</h2><img src="{_data_uri(pareto)}" alt="Pareto plot">')
    ocr = ocr_by_category(table)
    if ocr:
        categories = sorted({c for row in ocr.values() for c in row})
        head = "".join(f"<th>{e(c)}</th>" for c in categories)
        body_rows = "".join(
            f"<tr><th>{e(v)}</th>" + "".join(f"<td>{row[c]:.2f}</td>" if c in row else "<td>—</td>" for c in categories)
            for v, row in ocr.items()
        )
        body.append(f"<h2>OCR exact match by category</h2><table><tr><th>variant</th>{head}</tr>{body_rows}</table>")
    if images:
        variants = list(images)
        prompt_ids = list(next(iter(images.values())))
        head = "".join(f"<th>{e(v)}</th>" for v in variants)
        grid_rows = []
        for pid in prompt_ids:
            label = e(captions.get(pid, ""))
            tds = "".join(
                f'<td><img src="{_thumbnail(images[v][pid])}" width="{THUMBNAIL}"></td>'
                if pid in images[v]
                else "<td>—</td>"
                for v in variants
            )
            grid_rows.append(f"<tr><td><b>{e(pid)}</b><br>{label}</td>{tds}</tr>")
        body.append(f'<h2>Images</h2><table class="grid"><tr><th>prompt</th>{head}</tr>{"".join(grid_rows)}</table>')
    head_html = f"<meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style>"
    return f"<!doctype html><html><head>{head_html}</head><body>{''.join(body)}</body></html>\n"
