"""Cross-checks against bitsandbytes' NF4 float kernels: which kernel ran, how far its output is from the exact
decoding of the same bytes, and whether that is within what bitsandbytes' own tests accept.

Our codec is held to the reference bit for bit (:mod:`test_suites.oracles.nf4_reference`); bitsandbytes' kernels
are not, because they differ by CPU and build. bitsandbytes 0.50's CPU ``dequantize_4bit`` has an AVX-512 branch
(``dequantizeBlockwise4bitCpu`` in ``csrc/cpu_ops.cpp``) that indexes block scales per row, which is right only
when a row is a whole number of blocks; the ARM branch guards that case, the AVX-512 one does not. On an AVX-512
machine it decodes such layouts with the wrong scales (max error 0.12 on weights of max 0.23 for a 256x416 weight
in blocks of 64, measured here), elsewhere exactly. bitsandbytes' tests never look at those values:

* ``tests/test_functional.py::TestQuantize4BitFunctional::test_4bit_quant`` (0.50.1) covers 1024x1024 N(0, 1) data,
  rows whole blocks, and accepts a round trip whose mean absolute error stays below ``mean + N_SIGMA * std`` of
  its table (``N_SIGMA = 7``), likewise the mean relative error ``mean(|A - A'| / (|A| + 1e-8))``. Taking the
  exact decoding as the table's mean, a kernel may add at most ``7 * std`` to each (in units of the data's RMS).
* ``tests/test_ops.py::TestQuantize4bit::test_quantize_4bit_not_divisible_by_blocksize`` and ``test_dequantize_4bit``
  check only shape, dtype and finiteness for other layouts. So do we; the measured difference is reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch

N_SIGMA = 7
# nf4 rows of the test_4bit_quant table: blocksize -> (std of the mean abs error, std of the mean rel error)
NF4_ERROR_STD = {
    32: (0.000069, 0.000304),
    64: (0.000074, 0.000340),
    128: (0.000091, 0.000391),
    256: (0.000102, 0.000398),
    512: (0.000143, 0.000544),
    1024: (0.000187, 0.000600),
    2048: (0.000251, 0.000747),
    4096: (0.000360, 0.000999),
}


@dataclasses.dataclass(frozen=True)
class KernelComparison:
    """How one kernel output compares with the exact decoding of the same bytes."""

    path: str
    rows_whole_blocks: bool
    max_abs: float  # max |kernel - reference|
    extra_error: float  # mean |source - kernel| - mean |source - reference|, over the source's RMS
    extra_rel_error: float  # the same for bitsandbytes' mean relative error
    finite: bool
    allowed: tuple[float, float] | None  # (extra_error, extra_rel_error) bitsandbytes' tests accept, if any

    @property
    def accepted(self) -> bool:
        if not self.finite:
            return False
        if self.allowed is None:
            return True
        return self.extra_error <= self.allowed[0] and self.extra_rel_error <= self.allowed[1]

    def summary(self) -> str:
        if self.allowed is None:
            rule = "rows are not whole blocks: bitsandbytes' tests check only shape, dtype and finiteness"
        else:
            rule = (
                f"bitsandbytes' test_4bit_quant accepts +{self.allowed[0]:.2g} mean error and "
                f"+{self.allowed[1]:.2g} mean relative error ({N_SIGMA} sigma of its table)"
            )
        return (
            f"bitsandbytes {path_version()} {self.path}: max |kernel - exact decoding| {self.max_abs:.3g}, "
            f"mean error {self.extra_error:+.3g}, mean relative error {self.extra_rel_error:+.3g} against the "
            f"exact decoding; {rule}"
        )


def path_version() -> str:
    import bitsandbytes

    return bitsandbytes.__version__


@contextlib.contextmanager
def dequantize_4bit_path(shape: tuple[int, ...], blocksize: int, dtype: torch.dtype) -> Iterator[list[str]]:
    """Yields a list that names, after the block, the CPU kernel ``dequantize_4bit`` used.

    The Python fallback (bitsandbytes' torch reference, taken for odd row lengths and, on AVX-512, blocksize >= 2048)
    is observed directly; otherwise the native kernel ran, and which branch of it follows from the CPU and the row
    length (``csrc/cpu_ops.cpp``: AVX-512 when the row length is a multiple of 16, else scalar).
    """
    from bitsandbytes.backends.default import ops as default_ops

    used: list[str] = []
    original = default_ops._dequantize_4bit_compute

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        used.append("torch reference backend (_dequantize_4bit_compute)")
        return original(*args, **kwargs)

    default_ops._dequantize_4bit_compute = spy
    try:
        yield used
    finally:
        default_ops._dequantize_4bit_compute = original
    if not used:
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
        avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512" and shape[-1] % 16 == 0
        used.append(f"native cdequantize_blockwise_cpu_nf4_{name} ({'AVX-512' if avx512 else 'scalar'} branch)")


def compare(
    source: torch.Tensor, kernel: torch.Tensor, reference: torch.Tensor, blocksize: int, path: str
) -> KernelComparison:
    """``kernel`` and ``reference`` decode the same bytes quantized from ``source``; all share one shape."""
    source, kernel64, reference64 = source.double(), kernel.double(), reference.double()
    rms = float(source.pow(2).mean().sqrt()) or 1.0

    def errors(decoded: torch.Tensor) -> tuple[float, float]:
        error = (source - decoded).abs()
        return float(error.mean()) / rms, float((error / (source.abs() + 1e-8)).mean())

    (kernel_err, kernel_rel), (ref_err, ref_rel) = errors(kernel64), errors(reference64)
    whole = source.shape[-1] % blocksize == 0
    std = NF4_ERROR_STD[blocksize]
    return KernelComparison(
        path=path,
        rows_whole_blocks=whole,
        max_abs=float((kernel64 - reference64).abs().max()),
        extra_error=kernel_err - ref_err,
        extra_rel_error=kernel_rel - ref_rel,
        finite=bool(torch.isfinite(kernel64).all()),
        allowed=(N_SIGMA * std[0], N_SIGMA * std[1]) if whole else None,
    )
