"""Compiled CPU kernels for Q4_K: ggml's scalar operation sequence, SIMD across sub-blocks.

Each SIMD lane is one 32-weight sub-block doing exactly the float32 operations of ``make_qkx2_quants`` in C's order
(sums run over positions one by one; nothing is reassociated). Data sits position-major in a tile, ``[32, LANES]``,
so the innermost loops run across lanes and LLVM vectorises them; branches become per-lane selects. numba compiles
without fast-math, so LLVM neither contracts products into fused multiply-adds nor replaces divisions, and
``np.sqrt`` on float32 is the correctly rounded ``sqrtss``. Constants are float32 scalars: a Python float would
promote the arithmetic to float64.

Kernels release the GIL; the caller runs chunks on threads. Compiled code is cached next to this file.
"""

from __future__ import annotations

import numba
import numpy as np

SUB = 32  # weights per sub-block
NMAX = 15
LANES = 64  # sub-blocks per tile: three [32, 64] float32 tiles (24 KiB) stay in L1

_F = np.float32
_ZERO = _F(0.0)
_ONE = _F(1.0)
_SUB_F = _F(SUB)
_NMAX_F = _F(NMAX)
_MAGIC = _F(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer in the mantissa
# make_qkx2_quants(rmin=-1, rdelta=0.1, nstep=20): candidate numerators ``rmin + rdelta*is + nmax``, rounded as C does.
_STEP_NUMERATORS = np.array([(_F(-1.0) + _F(0.1) * _F(i)) + _NMAX_F for i in range(21)], dtype=np.float32)

_jit = numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy")  # numpy: x/0 is inf, not an exception


@_jit
def nearest_int(v: np.float32) -> np.int32:
    """ggml's ``nearest_int`` bit trick, wrap-around outside +-4194303 included; NaN gives 0 (x86's default NaN)."""
    r = v + _MAGIC
    if r != r:
        return np.int32(0)
    return np.int32((np.float32(r).view(np.int32) & 0x007FFFFF) - 0x00400000)


@_jit
def level(v: np.float32) -> np.int32:
    """``MAX(0, MIN(15, nearest_int(v)))``."""
    return max(np.int32(0), min(np.int32(NMAX), nearest_int(v)))


@_jit
def search_sub_blocks(blocks, scales, mins, levels) -> None:
    """``make_qkx2_quants(32, 15, x, av_x + |x|, ...)`` for every sub-block, as ``quantize_row_q4_K_ref`` calls it.

    blocks float32 ``[n, 32]`` -> scales, mins float32 ``[n]`` (``mins`` holds ``-min``, as stored) and levels
    uint8 ``[n, 32]``. The winning candidate's levels are recomputed at the end from its (iscale, min).
    """
    n = blocks.shape[0]
    x = np.zeros((SUB, LANES), np.float32)  # zeros: a first, partial tile's idle lanes stay defined
    w = np.empty((SUB, LANES), np.float32)
    lv = np.empty((SUB, LANES), np.float32)
    lo = np.empty(LANES, np.float32)
    hi = np.empty(LANES, np.float32)
    av_x = np.empty(LANES, np.float32)
    sum_w = np.empty(LANES, np.float32)
    sum_x = np.empty(LANES, np.float32)
    shift = np.empty(LANES, np.float32)  # C's running ``min``
    scale = np.empty(LANES, np.float32)
    iscale = np.empty(LANES, np.float32)
    best_error = np.empty(LANES, np.float32)
    best_iscale = np.empty(LANES, np.float32)
    best_shift = np.empty(LANES, np.float32)
    sum_l = np.empty(LANES, np.float32)
    sum_l2 = np.empty(LANES, np.float32)
    sum_xl = np.empty(LANES, np.float32)
    this_scale = np.empty(LANES, np.float32)
    this_min = np.empty(LANES, np.float32)
    error = np.empty(LANES, np.float32)
    accept = np.empty(LANES, np.bool_)

    for start in range(0, n, LANES):
        count = min(LANES, n - start)
        for k in range(count):  # transpose in; lanes past ``count`` (a last, partial tile) are computed and dropped
            for p in range(SUB):
                x[p, k] = blocks[start + k, p]

        # av_x = sqrt(sum x^2 / 32); weights = av_x + |x|
        for k in range(LANES):
            av_x[k] = x[0, k] * x[0, k]
        for p in range(1, SUB):
            for k in range(LANES):
                av_x[k] += x[p, k] * x[p, k]
        for k in range(LANES):
            av_x[k] = np.sqrt(av_x[k] / _SUB_F)
        for p in range(SUB):
            for k in range(LANES):
                w[p, k] = av_x[k] + abs(x[p, k])

        for k in range(LANES):
            lo[k] = x[0, k]
            hi[k] = x[0, k]
            sum_w[k] = w[0, k]
            sum_x[k] = w[0, k] * x[0, k]
        for p in range(1, SUB):
            for k in range(LANES):
                v = x[p, k]
                lo[k] = v if v < lo[k] else lo[k]
                hi[k] = v if v > hi[k] else hi[k]
                sum_w[k] += w[p, k]
                sum_x[k] += w[p, k] * x[p, k]

        # First guess: the full range; a flat sub-block (max == min) gets nonsense here and is fixed at the end.
        for k in range(LANES):
            lo[k] = _ZERO if lo[k] > _ZERO else lo[k]
            shift[k] = lo[k]
            iscale[k] = _NMAX_F / (hi[k] - lo[k])
            scale[k] = _ONE / iscale[k]
            best_iscale[k] = iscale[k]
            best_shift[k] = lo[k]
            best_error[k] = _ZERO
        for p in range(SUB):
            for k in range(LANES):
                q = np.float32(level(iscale[k] * (x[p, k] - lo[k])))
                diff = scale[k] * q + lo[k] - x[p, k]
                best_error[k] += w[p, k] * (diff * diff)

        for numerator in _STEP_NUMERATORS:
            for k in range(LANES):
                iscale[k] = numerator / (hi[k] - shift[k])
                sum_l[k] = _ZERO
                sum_l2[k] = _ZERO
                sum_xl[k] = _ZERO
            for p in range(SUB):
                for k in range(LANES):
                    q = np.float32(level(iscale[k] * (x[p, k] - shift[k])))
                    lv[p, k] = q
                    wl = w[p, k] * q
                    sum_l[k] += wl
                    sum_l2[k] += wl * q
                    sum_xl[k] += wl * x[p, k]
            for k in range(LANES):
                det = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k]
                accept[k] = det > _ZERO
                s = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / det
                m = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / det
                clipped = m > _ZERO
                this_scale[k] = sum_xl[k] / sum_l2[k] if clipped else s
                this_min[k] = _ZERO if clipped else m
                error[k] = _ZERO
            for p in range(SUB):
                for k in range(LANES):
                    diff = this_scale[k] * lv[p, k] + this_min[k] - x[p, k]
                    error[k] += w[p, k] * (diff * diff)
            for k in range(LANES):
                better = accept[k] and error[k] < best_error[k]
                best_error[k] = error[k] if better else best_error[k]
                scale[k] = this_scale[k] if better else scale[k]
                best_iscale[k] = iscale[k] if better else best_iscale[k]
                best_shift[k] = shift[k] if better else best_shift[k]
                shift[k] = this_min[k] if better else shift[k]

        for k in range(count):
            flat = hi[k] == lo[k]
            scales[start + k] = _ZERO if flat else scale[k]
            mins[start + k] = -lo[k] if flat else -shift[k]
            for p in range(SUB):
                q = level(best_iscale[k] * (x[p, k] - best_shift[k]))
                levels[start + k, p] = 0 if flat else q


@_jit
def requantize_and_pack(blocks, step, offset, levels, qs) -> None:
    """Levels against the stored parameters, packed two per byte as GGUF does.

    blocks float32 ``[n, 256]``, step and offset float32 ``[n, 8]`` (``d * scale_j``, ``dmin * min_j``), levels
    uint8 ``[n, 256]`` from the search (kept where ``step == 0``, C's ``if (!d) continue;``) -> qs uint8 ``[n, 128]``.
    """
    fresh = np.empty(256, np.uint8)
    for b in range(blocks.shape[0]):
        for j in range(8):
            d = step[b, j]
            dm = offset[b, j]
            for i in range(SUB):
                q = level((blocks[b, SUB * j + i] + dm) / d)
                fresh[SUB * j + i] = levels[b, SUB * j + i] if d == _ZERO else q
        for c in range(4):
            for i in range(SUB):
                qs[b, SUB * c + i] = fresh[64 * c + i] | (fresh[64 * c + SUB + i] << 4)
