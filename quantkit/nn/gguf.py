"""GGUFLinear: a q4_k / q8_0 weight kept as GGUF block bytes and dequantized on the fly at every forward.

Dequantization is diffusers' torch port (``diffusers.quantizers.gguf.utils.dequantize_functions``), run in float32
so it matches the ggml reference decoder exactly, then cast to the compute dtype.
"""

from __future__ import annotations

import gguf
import torch
import torch.nn.functional as F
from diffusers.quantizers.gguf.utils import GGML_QUANT_SIZES, dequantize_functions
from torch import nn

from quantkit import codecs
from quantkit.nn.base import QuantizedLinear

GGML_TYPES = {"q4_k": gguf.GGMLQuantizationType.Q4_K, "q8_0": gguf.GGMLQuantizationType.Q8_0}


class GGUFLinear(QuantizedLinear):
    FORMATS = tuple(GGML_TYPES)

    @classmethod
    def from_linear(cls, linear: nn.Linear, qtype: str, *, name: str = "linear") -> GGUFLinear:
        packed = codecs.quantize(linear.weight.detach(), qtype, name=name)
        return cls(packed, None if linear.bias is None else linear.bias.detach().clone())

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        qtype = GGML_TYPES[self.fmt]
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        blocks = self.weight.reshape(-1, type_size)
        weight = dequantize_functions[qtype](blocks, block_size, type_size, dtype=torch.float32)
        return weight.reshape(self.out_features, self.in_features).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(x.dtype), self._bias_for(x))
