"""Weight-only float8 e4m3fn with a float32 per-output-row scale: the published Ideogram 4 FP8 layout.

``scale = max|w_row| / 448``; ``q = (w / scale)`` cast to ``float8_e4m3fn`` after clamping to +-448, because
PyTorch's cast is not saturating (values of 480 and above become NaN). Dequantization follows the published
``Fp8Linear.forward``: ``q.to(dtype) * scale.to(dtype)[:, None]``, in the compute dtype.
"""

from __future__ import annotations

import torch

from quantkit.codecs.base import Packed, check_input, rows_of

FORMAT = "fp8_e4m3"
E4M3_MAX = 448.0


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    check_input(w, FORMAT, name)
    rows = rows_of(w)
    scale = rows.abs().amax(dim=1) / E4M3_MAX
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = (rows / safe[:, None]).clamp_(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return Packed(FORMAT, tuple(w.shape), codes, scale)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (p.data.to(dtype) * p.scale.to(dtype)[:, None]).reshape(p.shape)
