"""Quantization recipes and the variant registry.

Each variant family has one module here that defines its recipe class and registers its variants
(:mod:`quantkit.recipes.registry`); importing this package registers them all. See the README's "Adding a variant".
"""

from __future__ import annotations

from quantkit.recipes.base import QUANTIZER_VERSION, Recipe, load_recipe

# Registration order is the order of the default study's variants, hence of its table.
# isort: off
from quantkit.recipes.fp8 import FP8Reference
from quantkit.recipes.int8_w8a8 import Int8W8A8
from quantkit.recipes.gguf import GGUF
from quantkit.recipes.nf4 import NF4

# isort: on
from quantkit.recipes.registry import (
    VariantSpec,
    default_variants,
    known_variants,
    register_variant,
    unregister_variant,
    variant_spec,
)

__all__ = [
    "GGUF",
    "NF4",
    "QUANTIZER_VERSION",
    "FP8Reference",
    "Int8W8A8",
    "Recipe",
    "VariantSpec",
    "default_variants",
    "known_variants",
    "load_recipe",
    "register_variant",
    "unregister_variant",
    "variant_spec",
]
