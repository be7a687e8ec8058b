"""What every quantized drop-in for ``nn.Linear`` shares: ``Packed`` storage as buffers and a fixed storage dtype.

A layer stores its :class:`~quantkit.codecs.base.Packed` weight as buffers named after it: ``weight`` (codes or
bytes), ``weight_scale`` (scales outside the blocks), ``weight_<key>`` (extra state), plus an optional ``bias`` in
its original dtype. So ``state_dict()`` is the packed format itself and loads back into a layer of the same shape.
Moving a layer to another device works; casting it to another dtype does not touch the packed storage (a cast would
corrupt codes and scales); the output always takes the input's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from quantkit import codecs
from quantkit.codecs.base import Packed
from quantkit.errors import FormatError


class QuantizedLinear(nn.Module):
    """Base class: holds a 2-D ``Packed`` weight and a bias; subclasses define ``forward``."""

    FORMATS: ClassVar[tuple[str, ...]] = ()
    SMOOTHED: ClassVar[bool] = False  # takes a SmoothQuant vector (``smooth=``) applied to its input

    def __init__(self, packed: Packed, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if packed.fmt not in self.FORMATS:
            raise FormatError(f"{type(self).__name__} stores {', '.join(self.FORMATS)}, got a {packed.fmt} tensor")
        if len(packed.shape) != 2:
            raise FormatError(f"{type(self).__name__} needs a 2-D [out, in] weight, got shape {packed.shape}")
        self.out_features, self.in_features = packed.shape
        if bias is not None and tuple(bias.shape) != (self.out_features,):
            raise FormatError(f"{type(self).__name__}: bias shape {tuple(bias.shape)} != ({self.out_features},)")
        self.fmt = packed.fmt
        self.register_buffer("weight", packed.data)
        self.register_buffer("weight_scale", packed.scale)
        self._extra_keys = tuple(packed.extra)
        for key, value in packed.extra.items():
            self.register_buffer(f"weight_{key}", value)
        self.register_buffer("bias", bias)

    def packed(self) -> Packed:
        """The weight as a ``Packed`` tensor (sharing this layer's storage)."""
        extra = {key: getattr(self, f"weight_{key}") for key in self._extra_keys}
        return Packed(self.fmt, (self.out_features, self.in_features), self.weight, self.weight_scale, extra)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return codecs.dequantize(self.packed(), dtype)

    @property
    def nbytes(self) -> int:
        """Bytes this layer stores: packed weight, bias and any other buffer."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def _bias_for(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.bias is None else self.bias.to(x.dtype)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> QuantizedLinear:
        # Honour device moves, never dtype casts: packed codes and scales only make sense in their own dtype.
        for name, buffer in self._buffers.items():
            if buffer is not None:
                moved = fn(buffer)
                self._buffers[name] = moved if moved.dtype == buffer.dtype else buffer.to(moved.device)
        return self

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}, fmt={self.fmt}"
