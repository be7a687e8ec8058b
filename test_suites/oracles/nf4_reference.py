"""NF4 decoding in exact arithmetic (numpy), independent of quantkit and of bitsandbytes' kernels.

bitsandbytes documents dequantization in its pure-torch reference backend (``_dequantize_4bit_compute``,
``bitsandbytes/backends/default/ops.py``): ``code[index] * absmax[block]`` in float32, then a cast to the output
dtype. The product of two float32 values is exact in float64 (48 significant bits), so rounding it to float32 here
and then casting is that reference bit for bit on any IEEE machine, whatever SIMD or fused operations a kernel
uses. With double quantization the block absmax is first ``dynamic_code[q] * nested_absmax[block // 256]`` then
``+ offset``, each rounded to float32, as bitsandbytes' ``dequantize_blockwise`` and its Python caller compute it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from bitsandbytes.functional import QuantState

NF4_CODE = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=np.float32,
)
NESTED_BLOCKSIZE = 256


def nested_absmax(codes: np.ndarray, dynamic_code: np.ndarray, nested: np.ndarray, offset: float) -> np.ndarray:
    """Block absmax from double quantization, float32 operation by float32 operation."""
    scale = np.repeat(nested.astype(np.float32), NESTED_BLOCKSIZE)[: codes.size]
    return (dynamic_code.astype(np.float32)[codes.astype(np.int64)] * scale + np.float32(offset)).astype(np.float32)


def exact_values(data: np.ndarray, absmax: np.ndarray, blocksize: int, numel: int) -> np.ndarray:
    """The exact products ``code[index] * absmax[block]`` (float64), first element of each byte in the high nibble."""
    data = data.reshape(-1)
    indices = np.stack([data >> 4, data & 0x0F], axis=1).reshape(-1)[:numel]
    scales = np.repeat(absmax.astype(np.float32).astype(np.float64), blocksize)[:numel]
    return NF4_CODE.astype(np.float64)[indices] * scales


def decode(
    data: np.ndarray, absmax: np.ndarray, blocksize: int, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """bitsandbytes' reference dequantization: the exact product rounded to float32, then cast to ``dtype``."""
    values = exact_values(data, absmax, blocksize, int(np.prod(shape))).astype(np.float32)
    return torch.from_numpy(values).to(dtype).reshape(shape)


def absmax_of_state(state: QuantState) -> np.ndarray:
    """The float32 block absmax a bitsandbytes ``QuantState`` stands for (decoding a nested one exactly)."""
    if state.nested:
        return nested_absmax(
            state.absmax.cpu().numpy(),
            state.state2.code.cpu().numpy(),
            state.state2.absmax.cpu().numpy(),
            float(state.offset),
        )
    return state.absmax.cpu().numpy()


def decode_state(data: torch.Tensor, state: QuantState, dtype: torch.dtype) -> torch.Tensor:
    """The reference decoding of bitsandbytes' packed ``data`` with its ``QuantState``."""
    raw = data.detach().cpu().contiguous().view(torch.uint8).numpy()
    return decode(raw, absmax_of_state(state), state.blocksize, tuple(state.shape), dtype)
