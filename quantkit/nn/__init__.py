"""Drop-in ``nn.Linear`` replacements built on the codecs, one module per layer, and the format -> layer map
(extended by :func:`register_layer` when a variant brings a new format)."""

from __future__ import annotations

from quantkit.errors import FormatError
from quantkit.nn.base import QuantizedLinear
from quantkit.nn.fp8 import FP8Linear
from quantkit.nn.gguf import GGUFLinear
from quantkit.nn.nf4 import NF4Linear
from quantkit.nn.w8a8 import W8A8Linear

LAYERS: tuple[type[QuantizedLinear], ...] = (W8A8Linear, FP8Linear, GGUFLinear, NF4Linear)
_REGISTERED: list[type[QuantizedLinear]] = []

__all__ = [
    "LAYERS",
    "FP8Linear",
    "GGUFLinear",
    "NF4Linear",
    "QuantizedLinear",
    "W8A8Linear",
    "layer_class",
    "register_layer",
]


def register_layer(cls: type[QuantizedLinear]) -> None:
    """Make ``cls`` the layer of the formats in its ``FORMATS``, which no layer may already store."""
    if cls in _REGISTERED:
        return
    taken = sorted(f for layer in (*LAYERS, *_REGISTERED) for f in layer.FORMATS if f in cls.FORMATS)
    if taken:
        raise FormatError(f"{cls.__name__}: format(s) {taken} already have a layer")
    _REGISTERED.append(cls)


def layer_class(fmt: str) -> type[QuantizedLinear]:
    """The layer that stores and multiplies weights of codec format ``fmt``."""
    for cls in (*LAYERS, *_REGISTERED):
        if fmt in cls.FORMATS:
            return cls
    known = sorted(f for cls in (*LAYERS, *_REGISTERED) for f in cls.FORMATS)
    raise FormatError(f"no quantized layer for format {fmt!r}; layers exist for {', '.join(known)}")
