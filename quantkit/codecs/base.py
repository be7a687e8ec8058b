"""The quantized-tensor container, the input checks every codec shares, and how codecs use CPU threads."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from quantkit.errors import FormatError, MetaTensorError, WeightRangeError


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
FLOAT32_MAX = torch.finfo(torch.float32).max
CPU_CHUNK_ELEMENTS = 1 << 19  # 2 MiB of float32 per unit of work: per-op overhead stays small, caches stay warm


def validated(w: torch.Tensor, fmt: str, name: str, *, min_dims: int = 1) -> torch.Tensor:
    """``w`` after :func:`check_input`, detached: codecs encode values, never an autograd graph (torch's ``out=``
    ops refuse tensors that require grad, and packed scales must not carry one)."""
    check_input(w, fmt, name, min_dims=min_dims)
    return w.detach()


def check_input(w: torch.Tensor, fmt: str, name: str, *, min_dims: int = 1) -> None:
    """Reject what no format can encode: non-float dtypes, empty or value-less (meta) tensors, NaN or Inf, and
    float64 values that float32, the dtype every codec computes in, cannot hold."""
    if not isinstance(w, torch.Tensor):
        raise FormatError(f"{name}: expected a torch.Tensor for {fmt}, got {type(w).__name__}")
    if w.dtype not in FLOAT_DTYPES:
        raise FormatError(f"{name}: {fmt} quantizes float tensors, got dtype {w.dtype}")
    if w.dim() < min_dims or w.numel() == 0:
        raise FormatError(f"{name}: {fmt} needs a non-empty tensor with at least {min_dims} dims, got {tuple(w.shape)}")
    if w.is_meta:
        raise MetaTensorError(
            f"{name}: {fmt} encodes weight values, but this {tuple(w.shape)} tensor is on the meta device (a shape "
            "without values). Load the real weights before quantizing; layer decisions need shapes only."
        )
    w = w.detach()
    with one_torch_thread():  # one pass; NaN and Inf propagate (isfinite(w) is several times slower)
        lowest, highest = torch.aminmax(w)
    if not bool(torch.isfinite(lowest) & torch.isfinite(highest)):
        finite = torch.isfinite(w)
        bad = (~finite).nonzero()[0].tolist()
        raise FormatError(
            f"{name}: {fmt} cannot encode NaN or Inf; first non-finite value at index {bad} "
            f"({int((~finite).sum())} of {w.numel()} values). Fix the source weights."
        )
    if w.dtype == torch.float64 and max(-float(lowest), float(highest)) > FLOAT32_MAX:
        flat = int((w.abs() > FLOAT32_MAX).reshape(-1).nonzero()[0])
        raise WeightRangeError(
            f"{name}: {fmt} computes in float32, but the float64 value {float(w.reshape(-1)[flat]):.6g} at "
            f"{where(w.shape, flat)} is beyond float32's range (|w| <= {FLOAT32_MAX:.4g}) and would become Inf. "
            "Rescale the source weights or keep this tensor in higher precision."
        )


def quantize_per_row(
    w: torch.Tensor,
    fmt: str,
    name: str,
    *,
    qmax: float,
    codes: torch.dtype,
    to_codes: Callable[[torch.Tensor], torch.Tensor],
) -> Packed:
    """Symmetric per-row absmax quantization, the scheme int8 and fp8 share: ``s = max|w_row| / qmax`` (0 for an
    all-zero row, which then encodes to zeros), codes ``to_codes(w / s)`` clamped to +-qmax and cast to ``codes``.
    Rows are ``[out_features, everything else]``, encoded in independent chunks of rows."""
    w = validated(w, fmt, name)
    rows = w.reshape(w.shape[0], -1)
    data = torch.empty(rows.shape, dtype=codes, device=w.device)
    scale = torch.empty(rows.shape[0], dtype=torch.float32, device=w.device)

    def encode(part: slice) -> None:
        x = rows[part].to(torch.float32)  # exact for bf16/fp16 inputs
        s = x.abs().amax(dim=1) / qmax
        safe = torch.where(s > 0, s, torch.ones_like(s))
        data[part] = to_codes(x / safe[:, None]).clamp_(-qmax, qmax).to(codes)
        scale[part] = s

    run_in_chunks(encode, rows.shape[0], max(1, CPU_CHUNK_ELEMENTS // rows.shape[1]), w.device)
    return Packed(fmt, tuple(w.shape), data, scale)


def where(shape: torch.Size | tuple[int, ...], flat: int) -> str:
    """Index and row (the index over all dims but the last) of the element at flat position ``flat``."""
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    index.reverse()
    row = index[:-1] or [0]
    return f"index {index} (row {row[0] if len(row) == 1 else tuple(row)})"


def check_block_rows(w: torch.Tensor, fmt: str, name: str, block: int) -> None:
    """GGUF block formats quantize along the last dim in whole blocks."""
    if w.shape[-1] % block != 0:
        raise FormatError(
            f"{name}: {fmt} packs rows in blocks of {block} weights, but the row length {w.shape[-1]} "
            f"(shape {tuple(w.shape)}) is not a multiple of {block}. Keep this tensor in higher precision."
        )


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch ops in the block run single-threaded: see :func:`run_in_chunks` for why a codec wants that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_in_chunks(work: Callable[[slice], None], total: int, step: int, device: torch.device) -> None:
    """Call ``work`` on consecutive slices of ``range(total)``, ``step`` long; off CPU, once on the whole range.

    On CPU the slices run on plain threads whose torch ops are single-threaded. A codec issues many small torch
    ops; as OpenMP parallel regions each would end in a barrier, and a barrier stalls whenever another process
    holds a core: on the 2-core box next to one busy process, q8_0 of a 4096x4096 weight took 2.27 s with two
    OpenMP threads against 0.04 s with one. Independent slices on plain threads (torch ops release the GIL) scale
    without barriers. ``torch.set_num_threads(1)`` in a worker sets that thread's OpenMP team size (and torch's
    default for new threads, which is restored afterwards).
    """
    if device.type != "cpu":
        work(slice(0, total))
        return
    chunks = [slice(start, min(start + step, total)) for start in range(0, total, step)]
    threads = torch.get_num_threads()
    if threads == 1 or len(chunks) == 1:
        with one_torch_thread():
            for chunk in chunks:
                work(chunk)
        return
    try:
        list(_workers(threads).map(work, chunks))
    finally:
        torch.set_num_threads(threads)


@functools.cache
def _workers(count: int) -> ThreadPoolExecutor:
    """``count`` threads whose torch ops run single-threaded, kept for the process: starting threads (and
    torch's per-thread state) on every call costs more than a small codec call itself."""
    return ThreadPoolExecutor(
        count, thread_name_prefix="quantkit-codec", initializer=torch.set_num_threads, initargs=(1,)
    )
