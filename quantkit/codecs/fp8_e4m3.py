"""Weight-only float8 e4m3fn with a float32 per-output-row scale: the published Ideogram 4 FP8 layout.

``scale = max|w_row| / 448``; ``q = (w / scale)`` cast to ``float8_e4m3fn`` after clamping to +-448, because
PyTorch's cast is not saturating (values of 480 and above become NaN). Dequantization follows the published
``Fp8Linear.forward``: ``q.to(dtype) * scale.to(dtype)[:, None]``, in the compute dtype.
"""

from __future__ import annotations

import torch

from quantkit.codecs.base import CPU_CHUNK_ELEMENTS, Packed, run_in_chunks, validated

FORMAT = "fp8_e4m3"
E4M3_MAX = 448.0


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    """Rows are ``[out_features, everything else]``; they are encoded in independent chunks of rows."""
    w = validated(w, FORMAT, name)
    rows = w.reshape(w.shape[0], -1)
    codes = torch.empty(rows.shape, dtype=torch.float8_e4m3fn, device=w.device)
    scale = torch.empty(rows.shape[0], dtype=torch.float32, device=w.device)

    def encode(part: slice) -> None:
        x = rows[part].to(torch.float32)  # exact for bf16/fp16 inputs
        s = x.abs().amax(dim=1) / E4M3_MAX
        safe = torch.where(s > 0, s, torch.ones_like(s))
        codes[part] = (x / safe[:, None]).clamp_(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        scale[part] = s

    run_in_chunks(encode, rows.shape[0], max(1, CPU_CHUNK_ELEMENTS // rows.shape[1]), w.device)
    return Packed(FORMAT, tuple(w.shape), codes, scale)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (p.data.to(dtype) * p.scale.to(dtype)[:, None]).reshape(p.shape)
