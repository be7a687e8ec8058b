"""Symmetric per-output-channel int8: ``q = round(w / s)`` in [-127, 127] with ``s = max|w_row| / 127``.

The weight half of W8A8 (torchao ``Int8DynamicActivationInt8WeightConfig``, SmoothQuant's ``per_channel``).
-128 is never used, so the range is symmetric and negation is exact. Rounding is half-to-even (``torch.round``).
An all-zero row gets scale 0 and codes 0, so it decodes to exact zeros.
"""

from __future__ import annotations

import torch

from quantkit.codecs.base import Packed, check_input, rows_of

FORMAT = "int8"
QMAX = 127


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    check_input(w, FORMAT, name)
    rows = rows_of(w)
    scale = rows.abs().amax(dim=1) / QMAX
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(rows / safe[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return Packed(FORMAT, tuple(w.shape), codes, scale)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (p.data.to(torch.float32) * p.scale[:, None]).to(dtype).reshape(p.shape)
