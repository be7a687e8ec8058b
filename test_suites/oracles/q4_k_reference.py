"""Scalar Python port of ggml's Q4_K reference codec (llama.cpp ``ggml/src/ggml-quants.c``).

Ports ``nearest_int``, ``make_qkx2_quants``, ``get_scale_min_k4``, ``quantize_row_q4_K_ref`` (no imatrix) and
``dequantize_row_q4_K`` line by line. Every C float operation is one ``np.float32`` operation in the same order
(ggml-base is built for baseline x86-64, so nothing is contracted into fused multiply-adds), which makes the bytes
identical to the compiled C. Slow by design: a test oracle for ``quantkit.codecs.q4_k``, not a codec.
"""

from __future__ import annotations

import numpy as np

QK_K = 256
BLOCK_BYTES = 144

f32 = np.float32
_MAGIC = f32(12582912.0)  # 1.5 * 2**23


def nearest_int(fval: np.float32) -> int:
    """Round half to even via the float bit trick, including its wrap-around outside |fval| <= 4194303."""
    val = f32(fval + _MAGIC)
    if np.isnan(val):  # x86's default NaN has mantissa 0x400000, which the trick maps to 0
        return 0
    bits = int(np.array(val, dtype=np.float32).view(np.int32))
    return (bits & 0x007FFFFF) - 0x00400000


def fp16_bits(v: np.float32) -> int:
    """GGML_FP32_TO_FP16: round to nearest even, overflow to inf."""
    return int(np.array(v, dtype=np.float32).astype(np.float16).view(np.uint16))


def fp16_value(bits: int) -> np.float32:
    return f32(np.array(bits, dtype=np.uint16).view(np.float16))


def make_qkx2_quants(
    nmax: int, x: list[np.float32], weights: list[np.float32], rmin: float, rdelta: float, nstep: int
) -> tuple[np.float32, np.float32, list[int]]:
    """Weighted least-squares search for ``x ~ scale * L + min``; returns (scale, -min, L). use_mad is false."""
    n = len(x)
    lo, hi = x[0], x[0]
    sum_w = weights[0]
    sum_x = f32(sum_w * x[0])
    for i in range(1, n):
        if x[i] < lo:
            lo = x[i]
        if x[i] > hi:
            hi = x[i]
        w = weights[i]
        sum_w = f32(sum_w + w)
        sum_x = f32(sum_x + f32(w * x[i]))
    if lo > 0:
        lo = f32(0.0)
    if hi == lo:
        return f32(0.0), -lo, [0] * n
    iscale = f32(f32(nmax) / f32(hi - lo))
    scale = f32(f32(1.0) / iscale)
    best_error = f32(0.0)
    levels = []
    for i in range(n):
        level = max(0, min(nmax, nearest_int(f32(iscale * f32(x[i] - lo)))))
        levels.append(level)
        diff = f32(f32(f32(scale * f32(level)) + lo) - x[i])
        best_error = f32(best_error + f32(weights[i] * f32(diff * diff)))
    for step in range(nstep + 1):
        iscale = f32(f32(f32(f32(rmin) + f32(f32(rdelta) * f32(step))) + f32(nmax)) / f32(hi - lo))
        sum_l = sum_l2 = sum_xl = f32(0.0)
        aux = []
        for i in range(n):
            level = max(0, min(nmax, nearest_int(f32(iscale * f32(x[i] - lo)))))
            aux.append(level)
            wl = f32(weights[i] * f32(level))
            sum_l = f32(sum_l + wl)
            sum_l2 = f32(sum_l2 + f32(wl * f32(level)))
            sum_xl = f32(sum_xl + f32(wl * x[i]))
        det = f32(f32(sum_w * sum_l2) - f32(sum_l * sum_l))
        if det > 0:
            this_scale = f32(f32(f32(sum_w * sum_xl) - f32(sum_x * sum_l)) / det)
            this_min = f32(f32(f32(sum_l2 * sum_x) - f32(sum_l * sum_xl)) / det)
            if this_min > 0:
                this_min = f32(0.0)
                this_scale = f32(sum_xl / sum_l2)
            cur_error = f32(0.0)
            for i in range(n):
                diff = f32(f32(f32(this_scale * f32(aux[i])) + this_min) - x[i])
                cur_error = f32(cur_error + f32(weights[i] * f32(diff * diff)))
            if cur_error < best_error:
                levels, best_error, scale, lo = aux, cur_error, this_scale, this_min
    return scale, -lo, levels


def get_scale_min_k4(j: int, q: list[int]) -> tuple[int, int]:
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def quantize_block(x: list[np.float32]) -> bytes:
    """One 256-weight super-block -> its 144 GGUF bytes (``quantize_row_q4_K_ref`` loop body)."""
    levels: list[int] = []
    scales, mins = [], []
    max_scale = max_min = f32(0.0)
    for j in range(8):
        sub = x[32 * j : 32 * j + 32]
        sum_x2 = f32(0.0)
        for v in sub:
            sum_x2 = f32(sum_x2 + f32(v * v))
        av_x = f32(np.sqrt(f32(sum_x2 / f32(32))))
        weights = [f32(av_x + abs(v)) for v in sub]
        scale, the_min, sub_levels = make_qkx2_quants(15, sub, weights, -1.0, 0.1, 20)
        scales.append(scale)
        mins.append(the_min)
        levels.extend(sub_levels)
        if scale > max_scale:
            max_scale = scale
        if the_min > max_min:
            max_min = the_min

    inv_scale = f32(f32(63.0) / max_scale) if max_scale > 0 else f32(0.0)
    inv_min = f32(f32(63.0) / max_min) if max_min > 0 else f32(0.0)
    packed = [0] * 12
    for j in range(8):
        ls = min(63, nearest_int(f32(inv_scale * scales[j])) & 0xFF)  # C stores the int in a uint8_t first
        lm = min(63, nearest_int(f32(inv_min * mins[j])) & 0xFF)
        if j < 4:
            packed[j] = ls
            packed[j + 4] = lm
        else:
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
            packed[j - 4] |= (ls >> 4) << 6
            packed[j] |= (lm >> 4) << 6
    d_bits = fp16_bits(f32(max_scale / f32(63.0)))
    dmin_bits = fp16_bits(f32(max_min / f32(63.0)))

    for j in range(8):
        sc, m = get_scale_min_k4(j, packed)
        d = f32(fp16_value(d_bits) * f32(sc))
        if d == 0:  # ggml `if (!d) continue;` keeps make_qkx2_quants' levels for this sub-block
            continue
        dm = f32(fp16_value(dmin_bits) * f32(m))
        for i in range(32):
            levels[32 * j + i] = max(0, min(15, nearest_int(f32(f32(x[32 * j + i] + dm) / d))))

    qs = []
    for j in range(0, QK_K, 64):
        qs.extend(levels[j + i] | (levels[j + i + 32] << 4) for i in range(32))
    return d_bits.to_bytes(2, "little") + dmin_bits.to_bytes(2, "little") + bytes(packed) + bytes(qs)


def quantize(x: np.ndarray) -> np.ndarray:
    """float32 ``[rows, k]`` (k a multiple of 256) -> uint8 ``[rows, k / 256 * 144]``."""
    rows = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    with np.errstate(all="ignore"):
        out = [b"".join(quantize_block(list(row[b : b + QK_K])) for b in range(0, row.size, QK_K)) for row in rows]
    return np.frombuffer(b"".join(out), dtype=np.uint8).reshape(rows.shape[0], -1).copy()


def dequantize(data: np.ndarray) -> np.ndarray:
    """uint8 ``[rows, n * 144]`` -> float32 ``[rows, n * 256]`` (``dequantize_row_q4_K``)."""
    rows = np.asarray(data, dtype=np.uint8).reshape(data.shape[0], -1)
    out = np.empty((rows.shape[0], rows.shape[1] // BLOCK_BYTES * QK_K), dtype=np.float32)
    with np.errstate(all="ignore"):  # inf * 0 in a block whose d overflowed fp16 is NaN, as in C
        for r, row in enumerate(rows):
            _dequantize_row(row, out[r])
    return out


def _dequantize_row(row: np.ndarray, out: np.ndarray) -> None:
    for b in range(0, row.size, BLOCK_BYTES):
        blk = row[b : b + BLOCK_BYTES]
        d = fp16_value(int(blk[0]) | int(blk[1]) << 8)
        dmin = fp16_value(int(blk[2]) | int(blk[3]) << 8)
        packed, qs = [int(v) for v in blk[4:16]], [int(v) for v in blk[16:]]
        y = out[b // BLOCK_BYTES * QK_K :]
        for chunk in range(4):
            sc, m = get_scale_min_k4(2 * chunk, packed)
            d1, m1 = f32(d * f32(sc)), f32(dmin * f32(m))
            sc, m = get_scale_min_k4(2 * chunk + 1, packed)
            d2, m2 = f32(d * f32(sc)), f32(dmin * f32(m))
            for i in range(32):
                q = qs[32 * chunk + i]
                y[64 * chunk + i] = f32(f32(d1 * f32(q & 0xF)) - m1)
                y[64 * chunk + 32 + i] = f32(f32(d2 * f32(q >> 4)) - m2)
