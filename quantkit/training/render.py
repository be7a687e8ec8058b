"""Render a JSON caption into the image it describes: the training targets of the embedded text-capable tiny model.

What is drawn, on a ``size`` canvas (bboxes are ``[y_min, x_min, y_max, x_max]`` on 0..1000):

* the **background** is one flat colour of the caption's palette: the palette colour that contrasts most with the
  text colours (so every text element is legible, as the captions ask: "clearly legible");
* each ``obj`` element is an outlined shape (ellipse or rectangle, chosen by hashing its description) in its colour,
  inside its bbox, or in a free corner when it has none;
* each ``text`` element is its exact string in DejaVu Sans Bold (shipped with matplotlib) in its colour, centred in
  its bbox at the largest size that fits, on a backing patch of the background colour so no outline crosses a glyph.
  Glyphs are never smaller than ``min_text_height`` of the canvas height: a caption's thin bbox (a 6 %-high
  subtitle) would otherwise give glyphs no OCR can read at 128 px; such a box grows about its centre.

Colours come from the element's ``color_palette``, else from a palette colour named in its description ("lemon
lettering"), else from the caption's palette. Text elements without a bbox are stacked in horizontal bands.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from PIL import Image, ImageDraw, ImageFont

from quantkit.prompts.caption import Caption, parse
from quantkit.prompts.expanders.template import PALETTES

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
DEFAULT_SIZE = (128, 128)
MIN_TEXT_HEIGHT = 0.16  # cap height floor, as a fraction of the canvas height
FALLBACK_PALETTE = ("#FFFFFF", "#111111")
COLOUR_NAMES = {name: hex_ for palette in PALETTES for name, hex_ in palette}
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


def render_caption(
    caption: Caption | Mapping[str, Any] | str,
    size: tuple[int, int] = DEFAULT_SIZE,
    *,
    min_text_height: float = MIN_TEXT_HEIGHT,
) -> Image.Image:
    """The RGB image a caption describes; ``size`` is (height, width). Deterministic: same caption, same pixels."""
    caption = parse(caption)
    height, width = size
    texts = [e for e in caption.elements if e.type == "text"]
    objs = [e for e in caption.elements if e.type == "obj"]
    palette = caption_palette(caption)
    text_colours = [element_colour(e.to_dict(), palette) for e in texts]
    background = max(palette, key=lambda c: min((contrast(c, t) for t in text_colours), default=contrast(c, "#000000")))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    stroke = max(1, round(min(size) / 48))
    for index, element in enumerate(objs):
        data = element.to_dict()
        colour = element_colour(data, palette)
        if colour == background:
            colour = max(palette, key=lambda c: contrast(c, background))
        box = _pixels(data["bbox"], size) if "bbox" in data else _corner(index, size)
        shape = draw.ellipse if _hash(data["desc"]) % 2 else draw.rectangle
        shape(box, outline=colour, width=stroke)
    slots = _bands(len(texts), size)
    for index, (element, colour) in enumerate(zip(texts, text_colours, strict=True)):
        data = element.to_dict()
        box = _pixels(data["bbox"], size) if "bbox" in data else slots[index]
        _draw_text(draw, data["text"], box, colour, background, size, min_text_height)
    return image


def caption_palette(caption: Caption) -> list[str]:
    """The caption's colours: its style palette, else the palette its colour names come from, else black/white."""
    style = caption.to_dict().get("style_description") or {}
    if style.get("color_palette"):
        return list(style["color_palette"])
    words = " ".join(e.desc for e in caption.elements).lower()
    for palette in PALETTES:
        if any(name in words for name, _ in palette):
            return [hex_ for _, hex_ in palette]
    return list(FALLBACK_PALETTE)


def element_colour(element: Mapping[str, Any], palette: Sequence[str]) -> str:
    """An element's own palette colour, else the palette colour its description names, else the darkest one."""
    if element.get("color_palette"):
        return element["color_palette"][0]
    desc = element.get("desc", "").lower()
    for name in sorted(COLOUR_NAMES, key=len, reverse=True):  # "sky blue" before "blue"
        if name in desc:
            return COLOUR_NAMES[name]
    return min(palette, key=luminance)


def luminance(colour: str) -> float:
    """WCAG relative luminance of ``#RRGGBB``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio (1 = identical luminance, 21 = black on white)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@functools.cache
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT), pixels)


def _draw_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    box: Box,
    colour: str,
    background: str,
    size: tuple[int, int],
    min_text_height: float,
) -> None:
    """``text`` centred in ``box`` at the largest font size that fits it, never below the height floor."""
    height, width = size
    x0, y0, x1, y1 = box
    floor = max(6, round(min_text_height * height / 0.73))  # DejaVu's cap height is 0.73 em
    pixels = floor
    while _extent(text, pixels + 1)[0] <= x1 - x0 and _extent(text, pixels + 1)[1] <= y1 - y0:
        pixels += 1
    while pixels > 6 and _extent(text, pixels)[0] > width - 2:  # a long string still fits the canvas
        pixels -= 1
    text_w, text_h = _extent(text, pixels)
    cx = min(max((x0 + x1) / 2, text_w / 2 + 1), width - text_w / 2 - 1)
    cy = min(max((y0 + y1) / 2, text_h / 2 + 1), height - text_h / 2 - 1)
    pad = max(1, pixels // 8)
    left, top = cx - text_w / 2, cy - text_h / 2
    draw.rectangle((left - pad, top - pad, left + text_w + pad, top + text_h + pad), fill=background)
    font = _font(pixels)
    bbox = font.getbbox(text)
    draw.text((left - bbox[0], top - bbox[1]), text, font=font, fill=colour)


def _extent(text: str, pixels: int) -> tuple[int, int]:
    x0, y0, x1, y1 = _font(pixels).getbbox(text)
    return x1 - x0, y1 - y0


def _pixels(bbox: Sequence[int], size: tuple[int, int]) -> Box:
    height, width = size
    y0, x0, y1, x1 = bbox
    return x0 * width / 1000, y0 * height / 1000, x1 * width / 1000, y1 * height / 1000


def _bands(count: int, size: tuple[int, int]) -> list[Box]:
    """Horizontal bands for text elements without a bbox: the first (the headline) gets the widest band."""
    height, width = size
    if count == 0:
        return []
    top, bottom = 0.2 * height, 0.8 * height
    step = (bottom - top) / count
    return [(0.05 * width, top + i * step, 0.95 * width, top + (i + 1) * step) for i in range(count)]


def _corner(index: int, size: tuple[int, int]) -> Box:
    height, width = size
    corners = ((0.04, 0.04), (0.76, 0.80), (0.04, 0.80), (0.76, 0.04))
    fx, fy = corners[index % len(corners)]
    return fx * width, fy * height, (fx + 0.2) * width, (fy + 0.16) * height


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def caption_digest(caption: str) -> str:
    """A short id for a caption (file names of rendered samples)."""
    return hashlib.sha256(json.dumps(caption).encode()).hexdigest()[:12]
