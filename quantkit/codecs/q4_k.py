"""GGUF Q4_K, byte-identical to llama.cpp's ``quantize_row_q4_K_ref`` (the no-imatrix path of ``llama-quantize``).

A row is cut into super-blocks of 256 weights, each stored in 144 bytes: ``d`` and ``dmin`` (fp16), twelve bytes of
6-bit per-sub-block scales and mins, and 128 bytes of 4-bit levels. A weight decodes as
``d * scale_j * level - dmin * min_j`` for its sub-block ``j`` of 32.

Bit-exactness comes from doing every float32 operation ggml does, in ggml's order: sums run sequentially over the
32 positions of a sub-block (one vector add per position, across all sub-blocks at once; a tree reduction rounds
differently), the 21-candidate scale search updates the running min as it improves, products are never fused into
multiply-adds, and ``nearest_int`` keeps its float bit trick (round half to even, wrapping outside +-4194303).
On CPU the per-weight work runs in compiled kernels (:mod:`quantkit.codecs._q4_k_kernel`, numba), each SIMD lane a
sub-block doing the scalar operation sequence. Elsewhere (CUDA), or without numba, eager torch does the same
operations vectorised over sub-blocks in position-major ``[32, n]`` tensors. Both paths work in chunks, spread over
CPU threads (:func:`~quantkit.codecs.base.run_in_chunks`). A super-block whose ``d`` or ``dmin`` overflows fp16
(a range of about 4e6 or more) would decode to Inf/NaN: that is an error, not a silent encoding.
"""

from __future__ import annotations

import numpy as np
import torch

from quantkit.codecs.base import Packed, check_block_rows, run_in_chunks, validated, where
from quantkit.errors import WeightRangeError

try:
    from quantkit.codecs import _q4_k_kernel as _kernel
except ImportError:  # numba missing: the eager torch path does all the work
    _kernel = None

FORMAT = "q4_k"
QK_K = 256  # weights per super-block
BLOCK = QK_K  # weights per block, the name every GGUF codec module uses
SUB = 32  # weights per sub-block
BLOCK_BYTES = 144
NMAX = 15  # largest 4-bit level

# make_qkx2_quants(32, 15, x, w, L, &min, Laux, rmin=-1.f, rdelta=0.1f, nstep=20, use_mad=false): the candidate
# numerators ``rmin + rdelta*is + nmax``, each operation rounded to float32 as C evaluates it.
_RMIN = torch.tensor(-1.0, dtype=torch.float32)
_RDELTA = torch.tensor(0.1, dtype=torch.float32)
_STEP_NUMERATORS = [float((_RMIN + _RDELTA * float(i)) + float(NMAX)) for i in range(21)]

_MAGIC = 12582912.0  # 1.5 * 2**23: adding it rounds to an integer in the mantissa
_SAFE_RANGE = 4194303.0  # |v| up to this, nearest_int(v) == round-half-even(v)
_CHUNK_SUB_BLOCKS = 8192  # sub-blocks per chunk of work: [32, 8192] float32 tensors are 1 MiB


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    """Encode ``w`` (float, last dim a multiple of 256) as Q4_K bytes ``uint8[rows, last_dim / 256 * 144]``."""
    w = validated(w, FORMAT, name)
    check_block_rows(w, FORMAT, name, QK_K)
    blocks = w.reshape(-1, QK_K).to(torch.float32)
    out = torch.empty(blocks.shape[0], BLOCK_BYTES, dtype=torch.uint8, device=blocks.device)

    def encode(chunk: slice) -> None:
        out[chunk] = _quantize_blocks(blocks[chunk])

    run_in_chunks(encode, blocks.shape[0], _CHUNK_SUB_BLOCKS // (QK_K // SUB), blocks.device)
    _check_scales(w, blocks, out, name)
    rows = w.shape[:-1].numel()
    return Packed(FORMAT, tuple(w.shape), out.reshape(rows, -1))


def _check_scales(w: torch.Tensor, blocks: torch.Tensor, out: torch.Tensor, name: str) -> None:
    """``d = max_scale / 63`` and ``dmin = max_min / 63`` are fp16: past 65504 they are Inf and the block decodes
    to Inf/NaN, which no caller wants (ggml writes it silently)."""
    header = out[:, :4].contiguous().view(torch.float16)
    broken = (~torch.isfinite(header)).any(dim=1)
    if bool(broken.any()):
        block = int(broken.nonzero()[0])
        low, high = torch.aminmax(blocks[block])
        raise WeightRangeError(
            f"{name}: q4_k stores each super-block's scales d and dmin as fp16, but the 256 weights at "
            f"{where(w.shape, block * QK_K)} span [{float(low):.4g}, {float(high):.4g}], too large for them "
            f"(a sub-block's step or offset past 63 x 65504 = 4.1e6 overflows); {int(broken.sum())} "
            "super-block(s) affected. Keep this tensor in higher precision."
        )


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decode as ``dequantize_row_q4_K`` does, in float32, then cast to ``dtype``."""
    blocks = p.data.reshape(-1, BLOCK_BYTES)
    d = blocks[:, 0:2].contiguous().view(torch.float16).to(torch.float32)
    dmin = blocks[:, 2:4].contiguous().view(torch.float16).to(torch.float32)
    scale, minimum = unpack_scales(blocks[:, 4:16])
    qs = blocks[:, 16:].reshape(-1, 4, 1, SUB)
    levels = torch.cat([qs & 0x0F, qs >> 4], dim=2).reshape(-1, 8, SUB).to(torch.float32)
    step = (d * scale.to(torch.float32))[:, :, None]
    offset = (dmin * minimum.to(torch.float32))[:, :, None]
    return (step * levels - offset).to(dtype).reshape(p.shape)


def unpack_scales(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``get_scale_min_k4`` for all eight sub-blocks: uint8 ``[n, 12]`` -> (scales, mins), each uint8 ``[n, 8]``."""
    low_s, low_m, nib = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scale = torch.cat([low_s & 63, (nib & 0x0F) | ((low_s >> 6) << 4)], dim=1)
    minimum = torch.cat([low_m & 63, (nib >> 4) | ((low_m >> 6) << 4)], dim=1)
    return scale, minimum


def pack_scales(scale: torch.Tensor, minimum: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`unpack_scales` for 6-bit values: (uint8 ``[n, 8]``, uint8 ``[n, 8]``) -> uint8 ``[n, 12]``."""
    s_lo, s_hi, m_lo, m_hi = scale[:, :4], scale[:, 4:], minimum[:, :4], minimum[:, 4:]
    return torch.cat([s_lo | ((s_hi >> 4) << 6), m_lo | ((m_hi >> 4) << 6), (s_hi & 0x0F) | ((m_hi & 0x0F) << 4)], 1)


def nearest_int(v: torch.Tensor) -> torch.Tensor:
    """ggml's ``nearest_int`` exactly, wrap-around included; NaN gives 0 as x86's default NaN does. int32."""
    r = v + _MAGIC
    out = (r.view(torch.int32) & 0x007FFFFF) - 0x00400000
    return out.masked_fill_(torch.isnan(r), 0)


def _over(numerator: float, t: torch.Tensor) -> torch.Tensor:
    """``numerator / t`` as one IEEE division (torch's ``scalar / tensor`` multiplies by a reciprocal instead)."""
    return torch.full_like(t, numerator).div_(t)


def _sqrt(t: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 ``sqrtf`` (torch's float32 CPU sqrt is not): the float64 root rounds correctly."""
    return torch.sqrt(t.to(torch.float64)).to(torch.float32)


def _sequential_sum(terms: torch.Tensor) -> torch.Tensor:
    """``acc = 0; for i: acc += terms[i]`` over dim 0, in float32 and in that order (C's accumulation loop)."""
    acc = terms[0] + 0.0
    for row in terms[1:]:
        acc += row
    return acc


def _round_levels_(v: torch.Tensor, ends: torch.Tensor, iscale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """In place: ``v = MAX(0, MIN(15, nearest_int(v)))`` for ``v = iscale * (x - shift)``, x ranging over ``ends``.

    Rounding is monotone, so the two ends bound every ``v``; while they stay within +-4194303 (always, short of
    pathological ranges), ``nearest_int`` is plain round-half-even and the fast path is exact.
    """
    bound = float(((ends - shift) * iscale).abs().max())
    if bound <= _SAFE_RANGE:  # NaN compares False
        return v.clamp_(0, NMAX).round_()
    return v.copy_(nearest_int(v).clamp_(0, NMAX))


def _make_qkx2_quants(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vectorised ``make_qkx2_quants`` over sub-blocks: x, w ``[32, n]`` -> (scale, the_min, levels ``[32, n]``).

    ``shift`` is C's running ``min``. A flat sub-block (``max == min``) returns early in C; here it runs along with a
    span of 1, which makes all its candidates degenerate (D == 0, never accepted), and its results are set at the end.
    """
    ends = torch.stack([x.amin(0), x.amax(0)])
    shift = ends[0].clamp(max=0.0)
    flat = ends[1] == shift
    span_fix = flat.to(torch.float32)
    sums_wx = _sequential_sum(torch.stack([w, w * x], dim=1))
    sum_w, sum_x = sums_wx[0], sums_wx[1]

    levels = torch.empty_like(x)
    moments = torch.empty((SUB, 3, x.shape[1]), dtype=torch.float32, device=x.device)
    wl, wl2, wlx = moments[:, 0], moments[:, 1], moments[:, 2]
    diff = torch.empty_like(x)

    def weighted_sq_error(scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        torch.mul(levels, scale, out=diff)
        diff.add_(shift).sub_(x)
        diff.mul_(diff).mul_(w)
        return _sequential_sum(diff)

    iscale = _over(NMAX, (ends[1] - shift) + span_fix)
    scale = _over(1.0, iscale)
    _round_levels_(torch.sub(x, shift, out=levels).mul_(iscale), ends, iscale, shift)
    best_error = weighted_sq_error(scale, shift)
    best_iscale, best_shift = iscale, shift

    for numerator in _STEP_NUMERATORS:
        iscale = _over(numerator, (ends[1] - shift) + span_fix)
        _round_levels_(torch.sub(x, shift, out=levels).mul_(iscale), ends, iscale, shift)
        torch.mul(w, levels, out=wl)
        torch.mul(wl, levels, out=wl2)
        torch.mul(wl, x, out=wlx)
        sum_l, sum_l2, sum_xl = _sequential_sum(moments)
        det = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
        clipped = this_min > 0
        this_min = this_min.masked_fill_(clipped, 0.0)
        this_scale = torch.where(clipped, sum_xl / sum_l2, this_scale)
        error = weighted_sq_error(this_scale, this_min)
        better = (error < best_error).logical_and_(det > 0)
        best_error = torch.where(better, error, best_error)
        scale = torch.where(better, this_scale, scale)
        best_iscale = torch.where(better, iscale, best_iscale)
        best_shift = torch.where(better, shift, best_shift)
        shift = torch.where(better, this_min, shift)

    # The winning candidate's levels, recomputed from the parameters that produced them.
    torch.sub(x, best_shift, out=levels).mul_(best_iscale)
    _round_levels_(levels, ends, best_iscale, best_shift)
    levels.masked_fill_(flat, 0.0)
    return scale.masked_fill_(flat, 0.0), -shift, levels


def _quantize_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """float32 ``[n, 256]`` -> uint8 ``[n, 144]`` (the body of ``quantize_row_q4_K_ref``), fused on CPU."""
    if blocks.device.type == "cpu" and _kernel is not None:
        return _quantize_blocks_fused(blocks)
    return _quantize_blocks_eager(blocks)


def _quantize_blocks_fused(blocks: torch.Tensor) -> torch.Tensor:
    """The compiled kernels do the per-weight work; the per-super-block header is shared with the eager path."""
    n = blocks.shape[0]
    x = blocks.contiguous().numpy()
    scales = np.empty(n * 8, np.float32)
    mins = np.empty(n * 8, np.float32)
    stale = np.empty((n * 8, SUB), np.uint8)
    _kernel.search_sub_blocks(x.reshape(n * 8, SUB), scales, mins, stale)
    header, step, offset = _super_block_header(
        torch.from_numpy(scales).reshape(n, 8), torch.from_numpy(mins).reshape(n, 8)
    )
    qs = np.empty((n, QK_K // 2), np.uint8)
    _kernel.requantize_and_pack(x, step.numpy(), offset.numpy(), stale.reshape(n, QK_K), qs)
    return torch.cat([header, torch.from_numpy(qs)], dim=1)


def _quantize_blocks_eager(blocks: torch.Tensor) -> torch.Tensor:
    """Torch ops on ``[32, n * 8]`` position-major tensors: runs on any device."""
    n = blocks.shape[0]
    x = blocks.reshape(n * 8, SUB).t().contiguous()  # [32, n*8]: position-major sub-blocks

    sq = x * x
    av_x = _sqrt(_sequential_sum(sq) / 32.0)
    w = x.abs().add_(av_x)
    scales, mins, stale = _make_qkx2_quants(x, w)
    header, step, offset = _super_block_header(scales.reshape(n, 8), mins.reshape(n, 8))

    # Re-quantize against the rounded parameters, as the decoder will see them.
    fresh = nearest_int((x + offset.reshape(1, n * 8)) / step.reshape(1, n * 8)).clamp_(0, NMAX)
    levels = torch.where(step.reshape(1, n * 8) == 0, stale, fresh)  # `if (!d) continue;` keeps the search's levels

    levels = levels.t().reshape(n, 4, 2, SUB).to(torch.uint8)
    qs = levels[:, :, 0] | (levels[:, :, 1] << 4)
    return torch.cat([header, qs.reshape(n, QK_K // 2)], dim=1)


def _super_block_header(scales: torch.Tensor, mins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sub-block (scale, -min) ``[n, 8]`` -> (the 16 header bytes ``[n, 16]``, step ``d * scale_j`` and offset
    ``dmin * min_j`` as the decoder will see them, each float32 ``[n, 8]``)."""
    max_scale = torch.where(scales > 0, scales, 0.0).amax(1, keepdim=True)  # C: `if (scale > max_scale)`; NaN skipped
    max_min = torch.where(mins > 0, mins, 0.0).amax(1, keepdim=True)
    inv_scale = torch.where(max_scale > 0, _over(63.0, max_scale), 0.0)
    inv_min = torch.where(max_min > 0, _over(63.0, max_min), 0.0)
    ls = (nearest_int(inv_scale * scales) & 0xFF).clamp_(max=63).to(torch.uint8)  # C stores in uint8_t, then MIN
    lm = (nearest_int(inv_min * mins) & 0xFF).clamp_(max=63).to(torch.uint8)
    d = (max_scale / 63.0).to(torch.float16)
    dmin = (max_min / 63.0).to(torch.float16)
    step = d.to(torch.float32) * ls.to(torch.float32)
    offset = dmin.to(torch.float32) * lm.to(torch.float32)
    header = torch.cat([d.view(torch.uint8), dmin.view(torch.uint8), pack_scales(ls, lm)], dim=1)
    return header, step, offset
