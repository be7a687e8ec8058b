"""bitsandbytes NF4: 4-bit NormalFloat codes in blocks over the flattened tensor, fp32 absmax per block.

Bit-exact with ``bitsandbytes.functional.quantize_4bit(w, blocksize, compress_statistics, quant_type="nf4")`` as
bitsandbytes 0.50.2 computes it on CPU:

* codes: ``scaled = clamp(x * (1 / absmax), -1, 1)`` (a partial last block divides by its absmax instead), the
  nearest NF4 value by ``bucketize`` against the midpoints of the codebook (a value exactly on a midpoint takes the
  lower index); two codes per byte, the first in the HIGH nibble; ``data`` is uint8 ``[(n + 1) // 2, 1]``.
  An all-zero block records absmax 0 (or 1e-38 when it is the partial last block, as bnb does).
* double quantization (``double_quant=True``, bnb's ``compress_statistics``): ``offset = absmax.mean()``, and
  ``absmax - offset`` is quantized to 8 bits with the signed dynamic map in blocks of 256 by bnb's CPU kernel, which
  looks codes up in a 65536-entry table over [-1, 1] rather than searching for the nearest value; that table is
  reproduced here, so the codes match bnb's even where they are not the nearest.

Layout of :class:`Packed` (the tensors of bnb's ``QuantState``, so ``quantkit.io.safetensors`` can write
bitsandbytes' own serialisation): ``scale`` is the per-block absmax (fp32), or with double quantization the uint8
codes of ``absmax - offset``; ``extra["blocksize"]`` is an int64 scalar; with double quantization
``extra["nested_absmax"]`` (fp32, one per 256 blocks) and ``extra["nested_offset"]`` (fp32 scalar) complete it.
bnb's CUDA kernels are not reproduced: on a GPU this module computes the same CPU-reference result. On CPU the
blocks are encoded in chunks on single-threaded workers (:func:`~quantkit.codecs.base.run_in_chunks`); the mean
for double quantization stays one whole-tensor op in the calling thread, as bnb computes it (a float reduction's
rounding depends on how it is split).
"""

from __future__ import annotations

import functools

import torch

from quantkit.codecs.base import CPU_CHUNK_ELEMENTS, Packed, run_in_chunks, validated
from quantkit.errors import FormatError

FORMAT = "nf4"
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
NESTED_BLOCKSIZE = 256
LUT_SIZE = 65536

# bitsandbytes ``_NF4_QUANT_TABLE`` (create_normal_map(0.9677083)), sorted ascending.
NF4_CODE = (
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
)


def nf4_code(device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.tensor(NF4_CODE, dtype=torch.float32, device=device)


@functools.cache
def dynamic_code() -> torch.Tensor:
    """bnb ``create_dynamic_map(signed=True)``: 8-bit dynamic-exponent map, 256 sorted values in [-0.993, 1]."""
    values: list[float] = []
    max_exponent_bits, non_sign_bits = 7, 7
    for i in range(max_exponent_bits):
        boundaries = torch.linspace(0.1, 1, 2 ** (i + non_sign_bits - max_exponent_bits) + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        decade = 10 ** (-(max_exponent_bits - 1) + i)
        values += (decade * means).tolist()
        values += (-decade * means).tolist()
    values += [0.0, 1.0]
    return torch.tensor(sorted(values), dtype=torch.float32)


@functools.cache
def _dynamic_lut() -> torch.Tensor:
    """bnb's CPU ``build_quantize_lut``: entry ``i`` is the code index for ``-1 + 2i/65535`` (midpoint rule)."""
    code = dynamic_code()
    midpoints = 0.5 * (code[:-1] + code[1:])
    grid = (2.0 * torch.arange(LUT_SIZE, dtype=torch.float32)) / (LUT_SIZE - 1) - 1.0
    return torch.searchsorted(midpoints, grid).to(torch.uint8)


def quantize(w: torch.Tensor, *, name: str = "tensor", blocksize: int = 64, double_quant: bool = False) -> Packed:
    w = validated(w, FORMAT, name)
    if blocksize not in BLOCKSIZES:
        raise FormatError(f"{name}: nf4 blocksize must be one of {BLOCKSIZES}, got {blocksize}")
    flat = w.reshape(-1)
    n = flat.numel()
    absmax = torch.empty(-(-n // blocksize), dtype=torch.float32, device=w.device)
    packed = torch.empty((n + 1) // 2, dtype=torch.uint8, device=w.device)
    code = nf4_code(w.device)
    midpoints = (code[:-1] + code[1:]) / 2

    def encode(part: slice) -> None:  # whole blocks, so an even number of codes except at the very end
        block_absmax, scaled = _absmax_and_scaled(flat[part].float(), blocksize)
        absmax[part.start // blocksize : part.start // blocksize + block_absmax.numel()] = block_absmax
        codes = torch.bucketize(scaled, midpoints, out_int32=True).to(torch.uint8)
        if codes.numel() % 2:
            codes = torch.cat([codes, codes.new_full((1,), 7)])  # bnb pads with a zero, which encodes as index 7
        packed[part.start // 2 : part.start // 2 + codes.numel() // 2] = (codes[::2] << 4) | codes[1::2]

    run_in_chunks(encode, n, max(blocksize, CPU_CHUNK_ELEMENTS // blocksize * blocksize), w.device)
    extra = {"blocksize": torch.tensor(blocksize, dtype=torch.int64, device=w.device)}
    if not double_quant:
        return Packed(FORMAT, tuple(w.shape), packed.unsqueeze(1), absmax, extra)
    offset = absmax.mean()
    qabsmax = torch.empty(absmax.shape, dtype=torch.uint8, device=w.device)
    nested_absmax = torch.empty(-(-absmax.numel() // NESTED_BLOCKSIZE), dtype=torch.float32, device=w.device)

    def encode_absmax(part: slice) -> None:  # whole nested blocks of 256
        first = part.start // NESTED_BLOCKSIZE
        qabsmax[part], scales = _quantize_dynamic(absmax[part] - offset)
        nested_absmax[first : first + scales.numel()] = scales

    run_in_chunks(encode_absmax, absmax.numel(), NESTED_BLOCKSIZE * 256, w.device)
    extra |= {"nested_absmax": nested_absmax, "nested_offset": offset}
    return Packed(FORMAT, tuple(w.shape), packed.unsqueeze(1), qabsmax, extra)


def _absmax_and_scaled(flat: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """bnb's reference ``quantize_4bit`` scaling, operation for operation (the rounding must match)."""
    full = flat.numel() - flat.numel() % blocksize
    whole = flat[:full].reshape(-1, blocksize)
    absmax = whole.abs().max(dim=-1)[0]
    scaled = torch.clamp(whole * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
    if full < flat.numel():
        tail_absmax = flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, tail_absmax.unsqueeze(0)])
        scaled = torch.cat([scaled, torch.clamp(flat[full:] / tail_absmax, -1, 1)])
    return absmax, scaled


def _quantize_dynamic(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bnb's CPU ``quantize_blockwise`` (blocks of 256, dynamic map, table lookup with its exact arithmetic)."""
    n = values.numel()
    padded = torch.nn.functional.pad(values, (0, -n % NESTED_BLOCKSIZE)).reshape(-1, NESTED_BLOCKSIZE)
    absmax = padded.abs().amax(dim=1)
    inverse = torch.where(absmax == 0, 0.0, 1.0 / absmax)
    normed = torch.clamp(padded * inverse[:, None], -1.0, 1.0)
    # bnb: (uint16)fmaf((normed + 1) * 0.5, 65535, 0.5). The fma is exact in float64, then rounded once to fp32.
    position = (((normed + 1.0) * 0.5).double() * (LUT_SIZE - 1) + 0.5).float()
    codes = _dynamic_lut().to(values.device)[position.to(torch.int64)]
    codes[absmax == 0] = 0
    return codes.reshape(-1)[:n], absmax


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    blocksize = int(p.extra["blocksize"])
    absmax = p.scale
    if "nested_absmax" in p.extra:
        nested = dynamic_code().to(absmax.device)[absmax.to(torch.int64)]
        nested_scale = p.extra["nested_absmax"].repeat_interleave(NESTED_BLOCKSIZE)[: nested.numel()]
        absmax = nested * nested_scale + p.extra["nested_offset"]
    codes = p.data.reshape(-1)
    indices = torch.stack([codes >> 4, codes & 0xF], dim=1).reshape(-1)[: p.numel].to(torch.int64)
    values = nf4_code(codes.device)[indices]
    block_scale = absmax.repeat_interleave(blocksize)[: p.numel]
    return (values * block_scale).to(dtype).reshape(p.shape)
