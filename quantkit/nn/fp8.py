"""FP8Linear: float8 e4m3 weight with a per-row float32 scale, dequantized to the compute dtype at every forward.

The published Ideogram 4 FP8 layout (``weight``, ``weight_scale``) and its ``Fp8Linear.forward``: no FP8 tensor-core
hardware is needed, activations stay in the compute dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from quantkit import codecs
from quantkit.nn.base import QuantizedLinear


class FP8Linear(QuantizedLinear):
    FORMATS = ("fp8_e4m3",)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, name: str = "linear") -> FP8Linear:
        packed = codecs.quantize(linear.weight.detach(), "fp8_e4m3", name=name)
        return cls(packed, None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(x.dtype), self._bias_for(x))
