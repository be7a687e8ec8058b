"""Bit-exact quantization codecs, one small module per format.

``quantize(w, fmt) -> Packed`` and ``dequantize(p) -> Tensor`` dispatch to ``quantkit.codecs.<fmt>`` (or to a codec
a variant registered for a new format); each format module defines ``FORMAT``, ``quantize(w, *, name, **options)``
and ``dequantize(p, dtype)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from quantkit.codecs.base import Packed
from quantkit.errors import FormatError

FORMATS: tuple[str, ...] = ("q4_k", "q8_0", "nf4", "fp8_e4m3", "int8")

_REGISTERED: dict[str, ModuleType] = {}

__all__ = ["FORMATS", "Packed", "codec", "dequantize", "quantize", "register_codec"]


def register_codec(module: ModuleType) -> None:
    """Make ``module`` (with ``FORMAT``, ``quantize``, ``dequantize``) the codec of its format; built-ins stay."""
    fmt = module.FORMAT
    if fmt in FORMATS or _REGISTERED.get(fmt, module) is not module:
        raise FormatError(f"format {fmt!r} already has a codec")
    _REGISTERED[fmt] = module


def codec(fmt: str) -> ModuleType:
    """The module that implements ``fmt``."""
    if fmt in _REGISTERED:
        return _REGISTERED[fmt]
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; known formats: {', '.join((*FORMATS, *_REGISTERED))}")
    return importlib.import_module(f"quantkit.codecs.{fmt}")


def quantize(w: torch.Tensor, fmt: str, *, name: str = "tensor", **options: object) -> Packed:
    """Encode ``w`` in ``fmt``. ``name`` appears in error messages; ``options`` are format-specific."""
    return codec(fmt).quantize(w, name=name, **options)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decode ``p`` to a dense tensor of its logical shape."""
    return codec(p.fmt).dequantize(p, dtype)
