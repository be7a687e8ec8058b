"""The NF4 variant: bitsandbytes' 4-bit normal float, blockwise absmax, optional double quantization."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from quantkit.codecs.nf4 import BLOCKSIZES, NESTED_BLOCKSIZE
from quantkit.recipes.base import Recipe, choice, fail, integer
from quantkit.recipes.registry import VariantSpec, register_variant

if TYPE_CHECKING:
    import torch
    from torch import nn

    from quantkit.nn.nf4 import NF4Linear


@dataclasses.dataclass(frozen=True)
class NF4(Recipe):
    """bitsandbytes NF4: 4-bit normal-float codes in blocks of ``blocksize`` over the flattened weight.

    ``blocksize``: one of the codec's (and bitsandbytes') block sizes, 32 to 4096. ``double_quant`` quantizes the
    block absmaxes to 8 bits (bitsandbytes ``compress_statistics``).
    """

    blocksize: int = 64
    double_quant: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        kind = type(self).__name__
        choice(kind, "blocksize", integer(kind, "blocksize", self.blocksize), BLOCKSIZES)
        if not isinstance(self.double_quant, bool):
            raise fail(kind, "double_quant", "true or false", self.double_quant)

    @property
    def name(self) -> str:
        return "nf4"

    @property
    def format(self) -> str:
        return "nf4"

    def build(self, linear: nn.Linear, *, name: str, smooth: torch.Tensor | None) -> NF4Linear:
        from quantkit.nn.nf4 import NF4Linear

        return NF4Linear.from_linear(linear, blocksize=self.blocksize, double_quant=self.double_quant, name=name)

    def packed_bytes(self, out_features: int, in_features: int) -> int:
        numel = out_features * in_features
        blocks = math.ceil(numel / self.blocksize)
        codes = (numel + 1) // 2 + 8  # two codes per byte, the int64 blocksize
        if not self.double_quant:
            return codes + 4 * blocks  # float32 absmax per block
        return codes + blocks + 4 * math.ceil(blocks / NESTED_BLOCKSIZE) + 4  # uint8 absmax, float32 per 256, offset


register_variant(
    VariantSpec(
        name="nf4",
        recipe=NF4,
        default=True,
        sources=("recipes/nf4.py", "codecs/nf4.py", "nn/nf4.py"),
    )
)
