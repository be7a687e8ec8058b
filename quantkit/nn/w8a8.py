"""W8A8Linear: per-token dynamic symmetric int8 activations times per-channel int8 weights.

One layer, three kernels behind ``kernel``:

- ``int_mm``: int8 x int8 -> int32 through ``torch._int_mm`` (cuBLASLt IMMA on CUDA), padded to its shape rules
  (M > 16, K and N multiples of 8); the per-token x per-channel rescale and the bias happen in the epilogue.
- ``exact_cpu``: the same integer arithmetic as an int32 matmul on CPU; its accumulators equal ``int_mm``'s bit
  for bit (exact while ``K * 127**2 < 2**31``, i.e. K < 133,144).
- ``fake_quant``: quantize, dequantize, matmul in the compute dtype: what the published build ran.

``auto`` picks ``int_mm`` on CUDA and ``exact_cpu`` elsewhere. An optional per-input-channel ``smooth`` vector
(SmoothQuant) divides activations at run time; the stored weight was multiplied by it before quantization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from quantkit import codecs
from quantkit.codecs.base import Packed
from quantkit.codecs.int8 import QMAX
from quantkit.errors import FormatError
from quantkit.nn.base import QuantizedLinear

KERNELS = ("auto", "int_mm", "exact_cpu", "fake_quant")
INT_MM_MIN_ROWS = 17  # torch._int_mm on CUDA: self.size(0) > 16
INT_MM_MULTIPLE = 8  # ... and K, N multiples of 8
EXACT_INT32_MAX_K = (2**31 - 1) // (QMAX * QMAX)


def quantize_per_token(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row of a float32 ``[tokens, K]`` matrix; the math of ``quantkit.codecs.int8``.

    Written out here (not a codec call) because it runs at every forward and must not sync to check for NaN.
    """
    scale = rows.abs().amax(dim=1) / QMAX
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(rows / safe[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return codes, scale


def int_mm(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """``x_q @ w_q.T`` as int32 via ``torch._int_mm``, zero-padding M, K and N to what the kernel accepts."""
    m, k = x_q.shape
    n = w_q.shape[0]
    pad_m, pad_k, pad_n = max(0, INT_MM_MIN_ROWS - m), -k % INT_MM_MULTIPLE, -n % INT_MM_MULTIPLE
    if pad_m or pad_k:
        x_q = F.pad(x_q, (0, pad_k, 0, pad_m))
    if pad_k or pad_n:
        w_q = F.pad(w_q, (0, pad_k, 0, pad_n))
    # A row-major [N, K] weight transposed is the column-major right operand cuBLASLt is fastest with.
    return torch._int_mm(x_q, w_q.t())[:m, :n]


def exact_int_mm(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """``x_q @ w_q.T`` in int32 arithmetic on CPU: no float accumulation, so exact for any K the model has."""
    k = x_q.shape[1]
    if k > EXACT_INT32_MAX_K:
        raise FormatError(f"exact_cpu: K={k} could overflow int32 accumulators (limit {EXACT_INT32_MAX_K})")
    device = x_q.device
    acc = x_q.cpu().to(torch.int32) @ w_q.cpu().to(torch.int32).t()
    return acc.to(device)


class W8A8Linear(QuantizedLinear):
    """Drop-in ``nn.Linear``: int8 per-channel weight (``weight``, ``weight_scale``), int8 per-token activations."""

    FORMATS = ("int8",)
    SMOOTHED = True

    def __init__(
        self,
        packed: Packed,
        bias: torch.Tensor | None = None,
        *,
        smooth: torch.Tensor | None = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__(packed, bias)
        if smooth is not None:
            _check_smooth(smooth, self.in_features)
            smooth = smooth.to(torch.float32)
        self.register_buffer("smooth", smooth)
        self.kernel = kernel

    @property
    def kernel(self) -> str:
        return self._kernel

    @kernel.setter
    def kernel(self, kernel: str) -> None:
        if kernel not in KERNELS:
            raise FormatError(f"W8A8Linear kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        self._kernel = kernel

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, smooth: torch.Tensor | None = None, kernel: str = "auto", name: str = "linear"
    ) -> W8A8Linear:
        """Quantize ``linear``; with ``smooth``, the weight is multiplied by it per input channel first."""
        weight = linear.weight.detach()
        if smooth is not None:
            _check_smooth(smooth, linear.in_features, name)
            weight = weight.to(torch.float32) * smooth.to(weight.device, torch.float32)[None, :]
        packed = codecs.quantize(weight, "int8", name=name)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(packed, bias, smooth=smooth, kernel=kernel)

    def resolved_kernel(self, x: torch.Tensor) -> str:
        if self.kernel != "auto":
            return self.kernel
        return "int_mm" if x.is_cuda else "exact_cpu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.float32)
        if self.smooth is not None:
            rows = rows / self.smooth
        x_q, x_scale = quantize_per_token(rows)
        kernel = self.resolved_kernel(x)
        if kernel == "fake_quant":
            x_dq = (x_q.to(torch.float32) * x_scale[:, None]).to(x.dtype)
            out = F.linear(x_dq, self.dequantized_weight(x.dtype), self._bias_for(x))
        else:
            acc = int_mm(x_q, self.weight) if kernel == "int_mm" else exact_int_mm(x_q, self.weight)
            out = acc.to(torch.float32) * (x_scale[:, None] * self.weight_scale[None, :])
            if self.bias is not None:
                out = out + self.bias.to(torch.float32)
            out = out.to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self.kernel}, smooth={self.smooth is not None}"


def _check_smooth(smooth: torch.Tensor, in_features: int, name: str = "W8A8Linear") -> None:
    if tuple(smooth.shape) != (in_features,):
        raise FormatError(f"{name}: smooth vector has shape {tuple(smooth.shape)}, expected ({in_features},)")
    if not bool(torch.isfinite(smooth).all()) or not bool((smooth > 0).all()):
        raise FormatError(f"{name}: smooth vector must be finite and positive (it divides activations)")
