"""With the true checkpoints (on the GPU runner's model volume), each quality metric prefers the prompt that
describes the image. Skipped, with the variable to set, where the weights are absent."""

import pytest
from PIL import Image, ImageDraw

from quantkit.metrics import availability, load

pytestmark = pytest.mark.needs_weights


def shape_image(colour: str) -> Image.Image:
    image = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(image).rectangle((128, 128, 384, 384), fill=colour)
    return image


@pytest.mark.parametrize(("name", "options"), [("hpsv2", {"version": "v2.1"}), ("clip", {}), ("pickscore", {})])
def test_the_matching_prompt_scores_higher(name, options):
    ok, reason = availability(name, **options)
    if not ok:
        pytest.skip(reason)
    metric = load(name, **options)
    red, blue = shape_image("red"), shape_image("blue")
    red_prompt = metric.score([red, red], prompts=["a red square", "a blue square"])
    blue_prompt = metric.score([blue, blue], prompts=["a red square", "a blue square"])
    assert red_prompt[0] > red_prompt[1] and blue_prompt[1] > blue_prompt[0]


def test_hpsv2_scores_are_raw_cosines_in_the_published_range():
    ok, reason = availability("hpsv2")
    if not ok:
        pytest.skip(reason)
    (value,) = load("hpsv2").score([shape_image("red")], prompts=["a red square on a white background"])
    assert 0.1 < value < 0.45
