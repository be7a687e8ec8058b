"""Bit-exact quantization codecs, one small module per format.

``quantize(w, fmt) -> Packed`` and ``dequantize(p) -> Tensor`` dispatch to ``quantkit.codecs.<fmt>``; each format
module defines ``FORMAT``, ``quantize(w, *, name, **options)`` and ``dequantize(p, dtype)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from quantkit.codecs.base import Packed
from quantkit.errors import FormatError

FORMATS: tuple[str, ...] = ("q4_k", "q8_0", "nf4", "fp8_e4m3", "int8")

__all__ = ["FORMATS", "Packed", "codec", "dequantize", "quantize"]


def codec(fmt: str) -> ModuleType:
    """The module that implements ``fmt``."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"quantkit.codecs.{fmt}")


def quantize(w: torch.Tensor, fmt: str, *, name: str = "tensor", **options: object) -> Packed:
    """Encode ``w`` in ``fmt``. ``name`` appears in error messages; ``options`` are format-specific."""
    return codec(fmt).quantize(w, name=name, **options)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decode ``p`` to a dense tensor of its logical shape."""
    return codec(p.fmt).dequantize(p, dtype)
