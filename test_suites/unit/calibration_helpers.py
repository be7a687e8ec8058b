"""Shared fixtures for the calibration tests: driving tiny Ideogram 4 transformers through a denoising loop.

The loop mirrors the real sampler's structure (Euler steps over t, a conditional branch that sees text tokens and an
unconditional branch that sees only the image tokens) without the text encoder or VAE, so calibration statistics
are exercised on the real diffusers classes in well under a second.
"""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_ideogram4 import (
    IMAGE_POSITION_OFFSET,
    LLM_TOKEN_INDICATOR,
    OUTPUT_IMAGE_INDICATOR,
)

from quantkit.pipelines.tiny import TINY_TRANSFORMER_CONFIG, tiny_transformer

IN_CHANNELS = int(TINY_TRANSFORMER_CONFIG["in_channels"])
LLM_DIM = int(TINY_TRANSFORMER_CONFIG["llm_features_dim"])


def branch_inputs(image: torch.Tensor, text: torch.Tensor | None, t: float) -> dict[str, torch.Tensor]:
    """Packed transformer inputs for one sample: optional text tokens followed by an image grid."""
    side = int(image.shape[1] ** 0.5)
    n_text = 0 if text is None else text.shape[1]
    n_image = image.shape[1]
    dtype = image.dtype
    hh, ww = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    image_pos = torch.stack([torch.zeros(n_image, dtype=torch.long), hh.flatten(), ww.flatten()], -1)
    text_pos = torch.arange(n_text)[:, None].expand(n_text, 3)
    positions = torch.cat([text_pos, image_pos + IMAGE_POSITION_OFFSET])[None]
    indicator = torch.tensor([LLM_TOKEN_INDICATOR] * n_text + [OUTPUT_IMAGE_INDICATOR] * n_image)[None]
    hidden = torch.cat([torch.zeros(1, n_text, IN_CHANNELS, dtype=dtype), image], dim=1)
    features = torch.zeros(1, n_text + n_image, LLM_DIM, dtype=dtype)
    if text is not None:
        features[:, :n_text] = text
    return {
        "hidden_states": hidden,
        "timestep": torch.full((1,), t, dtype=dtype),
        "encoder_hidden_states": features,
        "position_ids": positions,
        "segment_ids": torch.zeros(1, n_text + n_image, dtype=torch.long),
        "indicator": indicator,
    }


def denoise(cond, uncond, *, steps: int = 3, seed: int = 0, guidance: float = 3.0, side: int = 4, n_text: int = 5):
    """Run an Euler flow-matching loop with asymmetric CFG; return the final image tokens ``[1, side**2, C]``."""
    dtype = next(cond.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(1, side * side, IN_CHANNELS, generator=gen).to(dtype)
    text = torch.randn(1, n_text, LLM_DIM, generator=gen).to(dtype)
    grid = torch.linspace(0, 1, steps + 1)
    with torch.no_grad():
        for step in range(steps):
            t, dt = float(grid[step]), float(grid[step + 1] - grid[step])
            v_cond = cond(**branch_inputs(image, text, t)).sample[:, n_text:]
            v_uncond = uncond(**branch_inputs(image, None, t)).sample
            image = image + dt * (guidance * v_cond + (1 - guidance) * v_uncond)
    return image


def tiny_pair(dtype: torch.dtype = torch.float32):
    """Two separate-weight tiny transformers, like the conditional and unconditional branches."""
    return {
        "transformer": tiny_transformer(seed=0, dtype=dtype),
        "unconditional_transformer": tiny_transformer(1, dtype),
    }


OUTLIER_CHANNELS = (5, 77, 300)


def plant_down_projection_outliers(model, factor: float = 100.0, blocks: tuple[int, ...] | None = None):
    """Make a few FFN hidden channels ``factor`` times larger, so every ``w2`` sees heavy activation outliers.

    Scaling rows of ``w3`` scales the SwiGLU product ``silu(w1 x) * w3 x`` in those channels; dividing the matching
    ``w2`` columns keeps the float function (the pattern trained networks show: outlier channels meet small
    weights). These are the outliers the published study found in Ideogram 4's down-projections, planted where
    the tests can name them.
    """
    channels = list(OUTLIER_CHANNELS)
    with torch.no_grad():
        for index, block in enumerate(model.layers):
            if blocks is not None and index not in blocks:
                continue
            block.feed_forward.w3.weight[channels] *= factor
            block.feed_forward.w2.weight[:, channels] /= factor
    return model


def planted_pair(dtype: torch.dtype = torch.float32):
    return {name: plant_down_projection_outliers(model) for name, model in tiny_pair(dtype).items()}
