"""Weight-only float8 e4m3fn with a float32 per-output-row scale: the published Ideogram 4 FP8 layout.

``scale = max|w_row| / 448``; ``q = (w / scale)`` cast to ``float8_e4m3fn`` after clamping to +-448, because
PyTorch's cast is not saturating (values of 480 and above become NaN). Dequantization follows the published
``Fp8Linear.forward``: ``q.to(dtype) * scale.to(dtype)[:, None]``, in the compute dtype.
"""

from __future__ import annotations

import torch

from quantkit.codecs.base import Packed, quantize_per_row

FORMAT = "fp8_e4m3"
E4M3_MAX = 448.0


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    # no rounding step: the clamp keeps the non-saturating cast from turning large values into NaN
    return quantize_per_row(w, FORMAT, name, qmax=E4M3_MAX, codes=torch.float8_e4m3fn, to_codes=lambda x: x)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (p.data.to(dtype) * p.scale.to(dtype)[:, None]).reshape(p.shape)
