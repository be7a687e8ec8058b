"""The variant registry: every variant quantkit knows, each declared once, by its recipe module.

A :class:`VariantSpec` says everything the rest of the library asks about a variant: ``quantize_`` calls its
recipe's hooks, ``save_variant`` / ``load_variant`` pick the checkpoint container, the study builds the recipe and
runs the default variants, the CLI and the plugin list the known ones, and the image cache keys each variant on
the source files it runs. A variant with a new codec format brings its codec module and layer class along, and
registering it makes ``quantkit.codecs`` and ``quantkit.nn`` know that format too.

Spellings: a variant's ``name`` is the recipe's ``name`` (``int8_w8a8``), its format is the recipe's ``format``
(the codec: ``int8``), its recipe class is CamelCase (``Int8W8A8``), its module is ``quantkit/recipes/<family>.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from quantkit.errors import RecipeError

if TYPE_CHECKING:
    from quantkit.nn.base import QuantizedLinear
    from quantkit.recipes.base import Recipe

CHECKPOINTS = ("safetensors", "gguf")
# The quantizer files every variant runs (package-relative): the hooks' caller, the recipe base and registry, and
# the codec and layer dispatch. A variant's own files are listed in its VariantSpec.sources.
COMMON_SOURCES = (
    "quantize.py",
    "recipes/__init__.py",
    "recipes/base.py",
    "recipes/registry.py",
    "codecs/__init__.py",
    "codecs/base.py",
    "nn/__init__.py",
    "nn/base.py",
    "pipelines/__init__.py",  # BRANCHES: which transformer copies are quantized and calibrated
)


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """One variant of the study, as the registry holds it.

    ``name``: the variant id everywhere (``--variants``, fixtures, cache keys, file names); equal to the name of
    the recipe that ``recipe()`` returns. ``recipe``: builds the study's (published) configuration of the variant.
    ``checkpoint``: the container ``save_variant`` writes, ``"safetensors"`` or ``"gguf"`` (GGUF block formats only).
    ``default``: runs in a study given no variant list. ``sources``: the files the variant runs besides
    :data:`COMMON_SOURCES` (its recipe module, codec, layer, calibration): paths under the package (a folder
    stands for its ``.py`` files) or absolute paths, for a variant declared outside the package; an edit to one
    of them re-generates exactly this variant's images. ``codec`` and ``layer``: for a new codec format only, the
    codec (a module with ``FORMAT``, ``quantize`` and ``dequantize``) and the ``QuantizedLinear`` class storing it.
    """

    name: str
    recipe: Callable[[], Recipe]
    checkpoint: Literal["safetensors", "gguf"] = "safetensors"
    default: bool = False
    sources: tuple[str, ...] = ()
    codec: ModuleType | None = None
    layer: type[QuantizedLinear] | None = None


_VARIANTS: dict[str, VariantSpec] = {}


def register_variant(spec: VariantSpec) -> VariantSpec:
    """Add ``spec`` to the registry (and its codec and layer, if it brings a new format); returns it."""
    if spec.checkpoint not in CHECKPOINTS:
        raise RecipeError(f"variant {spec.name!r}: checkpoint must be one of {CHECKPOINTS}, got {spec.checkpoint!r}")
    if _VARIANTS.get(spec.name, spec) != spec:
        raise RecipeError(f"variant {spec.name!r} is already registered ({_VARIANTS[spec.name]})")
    if (spec.codec is None) != (spec.layer is None):
        raise RecipeError(f"variant {spec.name!r}: a new format needs both its codec and its layer")
    if spec.codec is not None and spec.layer is not None:
        from quantkit import codecs, nn

        codecs.register_codec(spec.codec)
        nn.register_layer(spec.layer)
    _VARIANTS[spec.name] = spec
    return spec


def unregister_variant(name: str) -> None:
    """Remove a variant (a test's toy variant); its codec and layer stay known, as registered formats do."""
    _VARIANTS.pop(name, None)


def variant_spec(name: str) -> VariantSpec:
    """The registered variant ``name``; an unknown name raises :class:`RecipeError` listing the known ones."""
    if name not in _VARIANTS:
        raise RecipeError(f"unknown variant {name!r}; known variants: {', '.join(known_variants())}")
    return _VARIANTS[name]


def known_variants() -> tuple[str, ...]:
    """Every registered variant name, in registration order."""
    return tuple(_VARIANTS)


def default_variants() -> tuple[str, ...]:
    """The variants a study runs when it is given none."""
    return tuple(name for name, spec in _VARIANTS.items() if spec.default)
