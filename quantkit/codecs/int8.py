"""Symmetric per-output-channel int8: ``q = round(w / s)`` in [-127, 127] with ``s = max|w_row| / 127``.

The weight half of W8A8 (torchao ``Int8DynamicActivationInt8WeightConfig``, SmoothQuant's ``per_channel``).
-128 is never used, so the range is symmetric and negation is exact. Rounding is half-to-even (``torch.round``).
An all-zero row gets scale 0 and codes 0, so it decodes to exact zeros.
"""

from __future__ import annotations

import torch

from quantkit.codecs.base import Packed, quantize_per_row

FORMAT = "int8"
QMAX = 127


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    return quantize_per_row(w, FORMAT, name, qmax=QMAX, codes=torch.int8, to_codes=torch.round)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (p.data.to(torch.float32) * p.scale[:, None]).to(dtype).reshape(p.shape)
