"""The quantized-tensor container and the input checks every codec shares."""

from __future__ import annotations

import dataclasses
import math

import torch

from quantkit.errors import FormatError


@dataclasses.dataclass(frozen=True)
class Packed:
    """A tensor in a quantization format.

    ``data`` holds the format's bytes or codes (for the GGUF formats, uint8 ``[rows, row_bytes]`` in file byte
    order); ``scale`` holds the scales that live outside the blocks (per-row for int8/fp8, per-block absmax for
    nf4), ``None`` where the blocks carry their own; ``extra`` holds any further state (nf4 double quantization).
    ``shape`` is the logical shape of the dequantized tensor.
    """

    fmt: str
    shape: tuple[int, ...]
    data: torch.Tensor
    scale: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Storage bytes of everything the format keeps (data, scales, extra state)."""
        tensors = [self.data, *([self.scale] if self.scale is not None else []), *self.extra.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nbytes / self.numel

    def to(self, device: torch.device | str) -> Packed:
        return dataclasses.replace(
            self,
            data=self.data.to(device),
            scale=None if self.scale is None else self.scale.to(device),
            extra={k: v.to(device) for k, v in self.extra.items()},
        )


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_input(w: torch.Tensor, fmt: str, name: str, *, min_dims: int = 1) -> None:
    """Reject what no format can encode: non-float dtypes, empty tensors, NaN or Inf."""
    if not isinstance(w, torch.Tensor):
        raise FormatError(f"{name}: expected a torch.Tensor for {fmt}, got {type(w).__name__}")
    if w.dtype not in FLOAT_DTYPES:
        raise FormatError(f"{name}: {fmt} quantizes float tensors, got dtype {w.dtype}")
    if w.dim() < min_dims or w.numel() == 0:
        raise FormatError(f"{name}: {fmt} needs a non-empty tensor with at least {min_dims} dims, got {tuple(w.shape)}")
    lowest, highest = torch.aminmax(w)  # one pass; NaN and Inf propagate (isfinite(w) is several times slower)
    if not bool(torch.isfinite(lowest) & torch.isfinite(highest)):
        finite = torch.isfinite(w)
        bad = (~finite).nonzero()[0].tolist()
        raise FormatError(
            f"{name}: {fmt} cannot encode NaN or Inf; first non-finite value at index {bad} "
            f"({int((~finite).sum())} of {w.numel()} values). Fix the source weights."
        )


def check_block_rows(w: torch.Tensor, fmt: str, name: str, block: int) -> None:
    """GGUF block formats quantize along the last dim in whole blocks."""
    if w.shape[-1] % block != 0:
        raise FormatError(
            f"{name}: {fmt} packs rows in blocks of {block} weights, but the row length {w.shape[-1]} "
            f"(shape {tuple(w.shape)}) is not a multiple of {block}. Keep this tensor in higher precision."
        )


def rows_of(w: torch.Tensor) -> torch.Tensor:
    """View a weight as ``[out_features, everything else]`` in float32 (exact for bf16/fp16 inputs)."""
    return w.reshape(w.shape[0], -1).to(torch.float32)
