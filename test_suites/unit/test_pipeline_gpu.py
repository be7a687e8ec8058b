"""The real Ideogram 4 weights on the 3090 runner: the same adapter code as the tiny default, at full size."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from quantkit.pipelines.ideogram4 import PRESETS, WEIGHTS_ENV, generate, load_pipeline
from quantkit.prompts.prompt import Prompt

GIB = 1 << 30
CAPTION = (
    '{"high_level_description":"A neon sign that reads OPEN on a brick wall at night.",'
    '"compositional_deconstruction":{"background":"A dark red brick wall.","elements":[{"type":"text",'
    '"text":"OPEN","desc":"Glowing pink neon letters in the centre."}]}}'
)


@pytest.fixture(scope="module")
def real_dir() -> str:
    folder = os.environ.get(WEIGHTS_ENV)
    if not folder:
        pytest.skip(f"real Ideogram 4 weights not configured: set {WEIGHTS_ENV} to a diffusers-layout model folder")
    return folder


@pytest.mark.gpu
@pytest.mark.needs_weights
def test_real_weights_generate_a_finite_image_within_24_gib(real_dir):
    pipe = load_pipeline(
        real_dir, device="cuda", offload="model"
    )  # bf16 transformers (2 x 18.6 GB) stream block by block
    settings = dataclasses.replace(PRESETS["V4_TURBO_12"], max_sequence_length=1024)
    (image,) = generate(
        pipe, [Prompt("neon", "text", "neon OPEN sign", CAPTION, ("OPEN",))], settings, resolution=(1024, 1024)
    )
    pixels = np.asarray(image.image)
    assert pixels.shape == (1024, 1024, 3) and pixels.std() > 1.0
    assert image.peak_memory_bytes is not None and image.peak_memory_bytes < 24 * GIB
