"""Symmetric per-output-channel int8: ``q = round(w / s)`` in [-127, 127] with ``s = max|w_row| / 127``.

The weight half of W8A8 (torchao ``Int8DynamicActivationInt8WeightConfig``, SmoothQuant's ``per_channel``).
-128 is never used, so the range is symmetric and negation is exact. Rounding is half-to-even (``torch.round``).
An all-zero row gets scale 0 and codes 0, so it decodes to exact zeros.
"""

from __future__ import annotations

import torch

from quantkit.codecs.base import CPU_CHUNK_ELEMENTS, Packed, run_in_chunks, validated

FORMAT = "int8"
QMAX = 127


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    """Rows are ``[out_features, everything else]``; they are encoded in independent chunks of rows."""
    w = validated(w, FORMAT, name)
    rows = w.reshape(w.shape[0], -1)
    codes = torch.empty(rows.shape, dtype=torch.int8, device=w.device)
    scale = torch.empty(rows.shape[0], dtype=torch.float32, device=w.device)

    def encode(part: slice) -> None:
        x = rows[part].to(torch.float32)  # exact for bf16/fp16 inputs
        s = x.abs().amax(dim=1) / QMAX
        safe = torch.where(s > 0, s, torch.ones_like(s))
        codes[part] = torch.round(x / safe[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
        scale[part] = s

    run_in_chunks(encode, rows.shape[0], max(1, CPU_CHUNK_ELEMENTS // rows.shape[1]), w.device)
    return Packed(FORMAT, tuple(w.shape), codes, scale)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (p.data.to(torch.float32) * p.scale[:, None]).to(dtype).reshape(p.shape)
