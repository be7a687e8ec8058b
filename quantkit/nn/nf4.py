"""NF4Linear: bitsandbytes NF4 codes and block absmaxes; bitsandbytes' kernel where it runs, a dequantize otherwise.

``bnb`` calls ``bitsandbytes.matmul_4bit`` with a ``QuantState`` built from this layer's buffers, which is exactly
what ``bnb.nn.Linear4bit.forward`` does; bitsandbytes 0.50 runs it on CUDA, CPU and XPU. ``dequant`` decodes the
weight with ``quantkit.codecs.nf4`` (bit-exact with bitsandbytes' reference ``dequantize_4bit``) and multiplies in
the compute dtype, on any device. ``auto`` picks ``bnb`` where bitsandbytes imports and supports the device and
the layout.

On CPU, bitsandbytes 0.50 decodes with the wrong block scales when a row (``in_features``) is not a whole number of
blocks: the AVX-512 branch of its ``dequantizeBlockwise4bitCpu`` indexes scales per row (its ARM branch guards
that case, the AVX-512 one does not), so the result depends on the CPU. ``auto`` uses ``dequant`` there, and an
explicit ``bnb`` refuses such a layer on CPU, on every machine alike.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from quantkit import codecs
from quantkit.codecs.base import Packed
from quantkit.codecs.nf4 import NESTED_BLOCKSIZE, dynamic_code, nf4_code
from quantkit.errors import FormatError
from quantkit.nn.base import QuantizedLinear

KERNELS = ("auto", "bnb", "dequant")
BNB_DEVICES = ("cuda", "cpu", "xpu")


@functools.cache
def _bitsandbytes() -> ModuleType | None:
    if importlib.util.find_spec("bitsandbytes") is None:
        return None
    import bitsandbytes

    return bitsandbytes


class NF4Linear(QuantizedLinear):
    FORMATS = ("nf4",)

    def __init__(self, packed: Packed, bias: torch.Tensor | None = None, *, kernel: str = "auto") -> None:
        super().__init__(packed, bias)
        self.kernel = kernel

    @property
    def kernel(self) -> str:
        return self._kernel

    @kernel.setter
    def kernel(self, kernel: str) -> None:
        if kernel not in KERNELS:
            raise FormatError(f"NF4Linear kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        if kernel == "bnb" and _bitsandbytes() is None:
            raise FormatError("NF4Linear kernel 'bnb' needs bitsandbytes: pip install bitsandbytes")
        self._kernel = kernel

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, blocksize: int = 64, double_quant: bool = False, name: str = "linear"
    ) -> NF4Linear:
        packed = codecs.quantize(
            linear.weight.detach(), "nf4", name=name, blocksize=blocksize, double_quant=double_quant
        )
        return cls(packed, None if linear.bias is None else linear.bias.detach().clone())

    def resolved_kernel(self, x: torch.Tensor) -> str:
        if self.kernel != "auto":
            return self.kernel
        usable = _bitsandbytes() is not None and x.device.type in BNB_DEVICES and self._rows_safe_for_bnb(x)
        return "bnb" if usable else "dequant"

    def _rows_safe_for_bnb(self, x: torch.Tensor) -> bool:
        return x.device.type != "cpu" or self.in_features % int(self.weight_blocksize) == 0

    def quant_state(self, dtype: torch.dtype) -> object:
        """This layer's weight as a bitsandbytes ``QuantState`` (the tensors are shared, not copied)."""
        functional = _bitsandbytes().functional
        nested = None
        if self.weight_scale.dtype == torch.uint8:
            nested = functional.QuantState(
                absmax=self.weight_nested_absmax,
                code=dynamic_code().to(self.weight.device),
                blocksize=NESTED_BLOCKSIZE,
                dtype=torch.float32,
            )
        return functional.QuantState(
            absmax=self.weight_scale,
            shape=torch.Size((self.out_features, self.in_features)),
            code=nf4_code(self.weight.device),
            blocksize=int(self.weight_blocksize),
            quant_type="nf4",
            dtype=dtype,
            offset=None if nested is None else self.weight_nested_offset,
            state2=nested,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resolved_kernel(x) == "bnb":
            if not self._rows_safe_for_bnb(x):
                raise FormatError(
                    f"NF4Linear kernel 'bnb' on CPU needs in_features ({self.in_features}) to be a multiple of the "
                    f"blocksize ({int(self.weight_blocksize)}): bitsandbytes' AVX-512 CPU dequantize reads the wrong "
                    "block scales otherwise. Use kernel='auto' or 'dequant' for this layer."
                )
            return _bitsandbytes().matmul_4bit(
                x, self.weight, quant_state=self.quant_state(x.dtype), bias=self._bias_for(x)
            )
        return F.linear(x, self.dequantized_weight(x.dtype), self._bias_for(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self.kernel}"
