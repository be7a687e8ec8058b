"""The embedded tiny Ideogram 4: diffusers' real classes with tiny configs, made from a fixed seed.

Row lengths of the transformer's big linears are multiples of 256 so every format (Q4_K included) quantizes them,
while ``input_proj`` (16), ``adaln_modulation`` (64) and ``llm_cond_proj`` (416) exercise the skip rules the way the
real model's odd-sized layers do.
"""

from __future__ import annotations

import torch
from diffusers import Ideogram4Transformer2DModel

TEXT_HIDDEN_SIZE = 32
TINY_TRANSFORMER_CONFIG: dict[str, object] = {
    "in_channels": 16,
    "num_layers": 2,
    "attention_head_dim": 128,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "adaln_dim": 64,
    "llm_features_dim": 13 * TEXT_HIDDEN_SIZE,
    "rope_theta": 5_000_000,
    "mrope_section": (12, 10, 10),
    "norm_eps": 1e-5,
}


def tiny_transformer(seed: int = 0, dtype: torch.dtype = torch.float32) -> Ideogram4Transformer2DModel:
    """A seeded tiny ``Ideogram4Transformer2DModel`` with the real module names (to_q, feed_forward.w2, ...)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Ideogram4Transformer2DModel(**TINY_TRANSFORMER_CONFIG).to(dtype).eval()
