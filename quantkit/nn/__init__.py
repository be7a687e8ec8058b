"""Drop-in ``nn.Linear`` replacements built on the codecs, one module per layer, and the format -> layer map."""

from __future__ import annotations

from quantkit.errors import FormatError
from quantkit.nn.base import QuantizedLinear
from quantkit.nn.fp8 import FP8Linear
from quantkit.nn.gguf import GGUFLinear
from quantkit.nn.nf4 import NF4Linear
from quantkit.nn.w8a8 import W8A8Linear

LAYERS: tuple[type[QuantizedLinear], ...] = (W8A8Linear, FP8Linear, GGUFLinear, NF4Linear)

__all__ = ["LAYERS", "FP8Linear", "GGUFLinear", "QuantizedLinear", "W8A8Linear", "layer_class"]


def layer_class(fmt: str) -> type[QuantizedLinear]:
    """The layer that stores and multiplies weights of codec format ``fmt``."""
    for cls in LAYERS:
        if fmt in cls.FORMATS:
            return cls
    known = sorted(f for cls in LAYERS for f in cls.FORMATS)
    raise FormatError(f"no quantized layer for format {fmt!r}; layers exist for {', '.join(known)}")
