"""GGUF Q8_0: blocks of 32 weights along each row, 34 bytes each (fp16 ``d`` | int8 ``qs[32]``).

Follows llama.cpp ``quantize_row_q8_0_ref`` and gguf-py's numpy port bit for bit: ``d = max|x| / 127`` in fp32,
``id = 1/d`` from that unrounded ``d`` (0 for an all-zero block), ``qs = roundf(x * id)`` with C ``roundf``
(half away from zero), and only then ``d`` is rounded to fp16 for storage. Dequantization is ``qs * fp16(d)``.
``Packed.data`` is uint8 ``[rows, row_bytes]`` in GGUF byte order, ready for ``GGUFWriter``.

On CPU the work runs over chunks of blocks with buffers reused per thread (several times faster than
whole-tensor passes), the chunks spread over plain threads whose torch ops are single-threaded (see
:func:`~quantkit.codecs.base.run_in_chunks`). A block whose scale overflows fp16 is an error, not an Inf.
"""

from __future__ import annotations

import threading

import torch

from quantkit.codecs.base import Packed, check_block_rows, run_in_chunks, validated, where
from quantkit.errors import WeightRangeError

FORMAT = "q8_0"
GGML_TYPE = 8
BLOCK = 32
BLOCK_BYTES = 34
CPU_CHUNK_BLOCKS = 16384  # 2 MiB of fp32 per pass: large enough that per-op overhead stays small

# roundf(y) == copysign(trunc(|y| + JUST_BELOW_HALF), y) for every fp32 |y| < 128 (checked exhaustively); adding
# exactly 0.5 would round 0.49999997 up to 1.
JUST_BELOW_HALF = 0.5 - 2**-25


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    w = validated(w, FORMAT, name)
    check_block_rows(w, FORMAT, name, BLOCK)
    blocks = w.reshape(-1, BLOCK)
    out = torch.empty(blocks.shape[0], BLOCK_BYTES, dtype=torch.uint8, device=w.device)
    local = threading.local()

    def encode(part: slice) -> None:
        count = part.stop - part.start
        if getattr(local, "scratch", None) is None:  # the first chunk a thread sees is the largest
            local.scratch = _Scratch(count, w.device)
        _quantize_blocks(blocks[part].to(torch.float32), out[part], local.scratch)

    run_in_chunks(encode, blocks.shape[0], CPU_CHUNK_BLOCKS, w.device)
    _check_scales(w, out, name)
    return Packed(FORMAT, tuple(w.shape), out.reshape(-1, w.shape[-1] // BLOCK * BLOCK_BYTES))


def _check_scales(w: torch.Tensor, out: torch.Tensor, name: str) -> None:
    """A block whose scale ``max|w| / 127`` rounds to an fp16 Inf (from 65520 on) would decode to Inf/NaN."""
    overflow = torch.isinf(out[:, :2].contiguous().view(torch.float16)).reshape(-1)
    if bool(overflow.any()):
        block = int(overflow.nonzero()[0])
        peak = float(w.reshape(-1, BLOCK)[block].abs().max())
        raise WeightRangeError(
            f"{name}: q8_0 stores each block's scale max|w| / 127 as fp16, but the block at "
            f"{where(w.shape, block * BLOCK)} has max|w| = {peak:.4g}, whose scale overflows fp16 "
            f"(max|w| must stay below about {65520 * 127:.4g}); {int(overflow.sum())} block(s) affected. "
            "Keep this tensor in higher precision."
        )


class _Scratch:
    """Buffers reused across chunks: fresh large allocations page-fault and cost more than the arithmetic."""

    def __init__(self, blocks: int, device: torch.device) -> None:
        self.magnitude = torch.empty(blocks, BLOCK, dtype=torch.float32, device=device)
        self.scaled = torch.empty(blocks, BLOCK, dtype=torch.float32, device=device)
        self.d = torch.empty(blocks, 1, dtype=torch.float32, device=device)
        self.inverse = torch.empty(blocks, 1, dtype=torch.float32, device=device)

    def views(self, blocks: int) -> tuple[torch.Tensor, ...]:
        return self.magnitude[:blocks], self.scaled[:blocks], self.d[:blocks], self.inverse[:blocks]


def _quantize_blocks(x: torch.Tensor, out: torch.Tensor, scratch: _Scratch) -> torch.Tensor:
    """Write the Q8_0 bytes of ``x`` (fp32 ``[blocks, 32]``) into ``out``; return the unrounded scales ``d``."""
    magnitude, scaled, d, inverse = scratch.views(x.shape[0])
    torch.abs(x, out=magnitude)
    torch.amax(magnitude, dim=1, keepdim=True, out=d)
    d.div_(127)
    torch.reciprocal(d, out=inverse)
    inverse.masked_fill_(d == 0, 0.0)
    torch.mul(magnitude, inverse, out=scaled)
    scaled.add_(JUST_BELOW_HALF)
    torch.copysign(scaled, x, out=scaled)
    out[:, 2:].view(torch.int8).copy_(scaled)  # float -> int8 truncates toward zero: this is roundf(x * id)
    out[:, :2].copy_(d.to(torch.float16).view(torch.uint8))
    return d


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    blocks = p.data.reshape(-1, BLOCK_BYTES)
    d = blocks[:, :2].contiguous().view(torch.float16).to(torch.float32)
    qs = blocks[:, 2:].contiguous().view(torch.int8).to(torch.float32)
    return (qs * d).to(dtype).reshape(p.shape)
