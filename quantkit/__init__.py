"""quantkit: post-training quantization of Ideogram 4 with a pytest quality-regression harness.

``quantize_``, the recipes and the variant registry's ``VariantSpec`` / ``register_variant`` are exported lazily,
so ``import quantkit.stats`` (which must not need torch) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "quantize_": "quantkit.quantize",
    "FP8Reference": "quantkit.recipes",
    "GGUF": "quantkit.recipes",
    "Int8W8A8": "quantkit.recipes",
    "NF4": "quantkit.recipes",
    "Recipe": "quantkit.recipes",
    "VariantSpec": "quantkit.recipes",
    "register_variant": "quantkit.recipes",
}

__all__ = ["GGUF", "NF4", "FP8Reference", "Int8W8A8", "Recipe", "VariantSpec", "quantize_", "register_variant"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'quantkit' has no attribute {name!r}")
