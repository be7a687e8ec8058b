"""The caption renderer draws what a caption says: its strings, legibly, in its colours (the tiny model's targets)."""

import json

import numpy as np
import pytest

from quantkit.metrics.ocr import OcrExact
from quantkit.prompts.benchmark import load_benchmark
from quantkit.training.render import contrast, render_caption

SIGN = {
    "high_level_description": "A sign.",
    "style_description": {
        "aesthetics": "plain",
        "lighting": "flat",
        "medium": "illustration",
        "art_style": "flat vector",
        "color_palette": ["#FFFFFF", "#1D2B53", "#F5E050"],
    },
    "compositional_deconstruction": {
        "background": "A wall.",
        "elements": [
            {"type": "obj", "bbox": [100, 100, 900, 900], "desc": "A frame.", "color_palette": ["#F5E050"]},
            {"type": "text", "bbox": [400, 100, 430, 900], "text": "OPEN", "desc": "Navy lettering."},
        ],
    },
}


def colours(image) -> set[tuple[int, ...]]:
    return {tuple(int(c) for c in pixel) for pixel in np.asarray(image).reshape(-1, 3)}


def test_rendering_is_deterministic_and_sized_height_by_width():
    first = render_caption(json.dumps(SIGN), (96, 160))
    assert first.size == (160, 96)
    assert np.array_equal(np.asarray(first), np.asarray(render_caption(SIGN, (96, 160))))


def test_text_takes_the_colour_its_description_names_on_the_most_contrasting_palette_background():
    image = np.asarray(render_caption(SIGN))
    navy, white = (0x1D, 0x2B, 0x53), (0xFF, 0xFF, 0xFF)
    assert tuple(image[0, 0]) == white  # white contrasts most with navy text
    assert (image == navy).all(axis=-1).any()
    assert contrast("#1D2B53", "#FFFFFF") > contrast("#1D2B53", "#F5E050")


def test_a_thin_bbox_still_gets_glyphs_tall_enough_to_read():
    image = np.asarray(render_caption(SIGN))
    rows = np.flatnonzero((image == (0x1D, 0x2B, 0x53)).all(axis=-1).any(axis=1))
    # the bbox is 3.0% of the height (4 px at 128); glyphs are held to the 16% floor (~20 px)
    assert rows.max() - rows.min() + 1 >= 0.15 * image.shape[0]


def test_every_text_prompt_of_the_benchmark_renders_with_its_palette_colours():
    for prompt in load_benchmark("benchmark-v1"):
        if prompt.texts:
            image = render_caption(prompt.caption)
            assert image.size == (128, 128)
            assert len(colours(image)) > 2  # background, text and anti-aliasing at least


def test_pp_ocr_reads_the_rendered_study_prompts():
    prompts = [p for p in load_benchmark("benchmark-v1", limit=10) if p.texts]
    images = [render_caption(p.caption) for p in prompts]
    texts = [list(p.texts) for p in prompts]
    scores = OcrExact().score(images, texts=texts, prompts=[p.raw for p in prompts], references=None)
    # measured 0.94: PP-OCR reads "JAZZ" as "jázz" on one poster; every other element exactly
    assert float(np.mean(scores)) >= 0.9


@pytest.mark.parametrize("texts", [("A",), ("TWO", "LINES"), ("A MUCH LONGER HEADLINE THAN FITS",)])
def test_texts_without_bboxes_are_stacked_inside_the_canvas(texts):
    caption = {
        "compositional_deconstruction": {
            "background": "Plain.",
            "elements": [{"type": "text", "text": t, "desc": "Black lettering."} for t in texts],
        }
    }
    image = np.asarray(render_caption(caption))
    dark_rows = np.flatnonzero((image.sum(axis=-1) < 200).any(axis=1))
    assert len(dark_rows) > 0
    assert dark_rows.min() > 0.15 * image.shape[0] and dark_rows.max() < 0.85 * image.shape[0]  # in the bands
