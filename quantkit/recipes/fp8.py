"""The FP8 reference variant: float8 e4m3 weights with a per-row scale (the published FP8 layout)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from quantkit.recipes.base import Recipe
from quantkit.recipes.registry import VariantSpec, register_variant

if TYPE_CHECKING:
    import torch
    from torch import nn

    from quantkit.nn.fp8 import FP8Linear


@dataclasses.dataclass(frozen=True)
class FP8Reference(Recipe):
    """Weight-only float8 e4m3 with a per-row scale, dequantized at every forward: the published FP8 layout.

    Every linear is quantized (the published checkpoint has all 211 linears of a branch in FP8).
    """

    @property
    def name(self) -> str:
        return "fp8"

    @property
    def format(self) -> str:
        return "fp8_e4m3"

    def build(self, linear: nn.Linear, *, name: str, smooth: torch.Tensor | None) -> FP8Linear:
        from quantkit.nn.fp8 import FP8Linear

        return FP8Linear.from_linear(linear, name=name)

    def packed_bytes(self, out_features: int, in_features: int) -> int:
        return out_features * in_features + 4 * out_features  # one byte per weight, a float32 scale per row


register_variant(
    VariantSpec(
        name="fp8",
        recipe=FP8Reference,
        default=True,
        sources=("recipes/fp8.py", "codecs/fp8_e4m3.py", "nn/fp8.py"),
    )
)
