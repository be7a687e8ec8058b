"""The GGUF variants ``q4_k`` and ``q8_0``: llama.cpp block formats, written as ComfyUI-loadable GGUF files."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from quantkit import codecs
from quantkit.recipes.base import Recipe, choice, integer
from quantkit.recipes.registry import VariantSpec, register_variant

if TYPE_CHECKING:
    import torch
    from torch import nn

    from quantkit.nn.gguf import GGUFLinear

QTYPES = ("q4_k", "q8_0")


@dataclasses.dataclass(frozen=True)
class GGUF(Recipe):
    """Weight-only GGUF block quantization (``q4_k`` or ``q8_0``) of the linears, dequantized on the fly.

    ``min_numel``: linears with fewer weights stay (ComfyUI-GGUF's threshold). Linears whose rows do not divide
    into the format's blocks (the codec's ``BLOCK``: 256 for q4_k, 32 for q8_0) stay too; non-linear tensors are
    kept F16/F32.
    """

    qtype: Literal["q4_k", "q8_0"] = "q4_k"
    min_numel: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(type(self).__name__, "qtype", self.qtype, QTYPES)
        integer(type(self).__name__, "min_numel", self.min_numel)

    @property
    def name(self) -> str:
        return self.qtype

    @property
    def format(self) -> str:
        return self.qtype

    @property
    def block(self) -> int:
        """Weights per block of the format (a row must hold whole blocks)."""
        return int(codecs.codec(self.qtype).BLOCK)

    def skip_rules(self) -> tuple[str, ...]:
        return (
            *super().skip_rules(),
            f"linears with fewer than {self.min_numel} weights",
            f"linears whose row length is not a multiple of {self.block} ({self.qtype} block)",
        )

    def keep_reason(self, linear: nn.Linear) -> str | None:
        if linear.weight.numel() < self.min_numel:
            return f"too small: {linear.weight.numel()} < {self.min_numel} weights"
        if linear.in_features % self.block:
            return f"row length {linear.in_features} not a multiple of the {self.qtype} block {self.block}"
        return None

    def build(self, linear: nn.Linear, *, name: str, smooth: torch.Tensor | None) -> GGUFLinear:
        from quantkit.nn.gguf import GGUFLinear

        return GGUFLinear.from_linear(linear, self.qtype, name=name)

    def packed_bytes(self, out_features: int, in_features: int) -> int:
        return out_features * (in_features // self.block) * int(codecs.codec(self.qtype).BLOCK_BYTES)


register_variant(
    VariantSpec(
        name="q4_k",
        recipe=lambda: GGUF(qtype="q4_k"),
        checkpoint="gguf",
        default=True,
        sources=("recipes/gguf.py", "codecs/q4_k.py", "codecs/_q4_k_kernel.py", "nn/gguf.py"),
    )
)
register_variant(
    VariantSpec(
        name="q8_0",
        recipe=lambda: GGUF(qtype="q8_0"),
        checkpoint="gguf",
        default=True,
        sources=("recipes/gguf.py", "codecs/q8_0.py", "nn/gguf.py"),
    )
)
