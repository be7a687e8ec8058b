"""Quantization recipes: small frozen config objects (torchao style) that say what to quantize and how.

A recipe is data, not behaviour: ``quantize_`` reads it, ``recipe.json`` stores it, and its ``hash`` keys every
cache entry made from it. Each recipe lists its skip rules as fields (``keep`` patterns, size thresholds) so the
tensors that stay in higher precision are explicit; :meth:`Recipe.skip_rules` states them in words.

Serialised form: ``{"recipe": "<ClassName>", <field>: <value>, ...}``. An unknown class, an unknown field or a
value of the wrong type raises :class:`~quantkit.errors.RecipeError` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from quantkit.atomic import write_json
from quantkit.errors import RecipeError

# Bump whenever the bytes a recipe produces change (codec or layer changes), so cache keys change with them.
QUANTIZER_VERSION = "1"

W8A8_KERNELS = ("auto", "int_mm", "exact_cpu", "fake_quant")
ACTIVATION_MODES = ("per_token_dynamic",)
GGUF_QTYPES = ("q4_k", "q8_0")
NF4_BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)

__all__ = [
    "GGUF",
    "NF4",
    "QUANTIZER_VERSION",
    "FP8Reference",
    "Int8W8A8",
    "Recipe",
    "load_recipe",
]


def _fail(recipe: str, field: str, expected: str, value: object) -> RecipeError:
    return RecipeError(f"{recipe}.{field}: expected {expected}, got {value!r} ({type(value).__name__})")


def _names(recipe: str, field: str, value: object) -> tuple[str, ...]:
    """A tuple of module names / fnmatch patterns; a list (as JSON gives) is accepted."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise _fail(recipe, field, "a list of module names or fnmatch patterns", value)


def _int(recipe: str, field: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(recipe, field, f"an integer >= {minimum}", value)
    return value


def _choice(recipe: str, field: str, value: object, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, bool) or value not in choices:
        raise _fail(recipe, field, f"one of {', '.join(map(repr, choices))}", value)
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """Base of every recipe. ``keep``: fnmatch patterns of linear layers that stay in higher precision.

    Patterns match the layer's name inside its transformer (``layers.3.feed_forward.w2``) or, on a pipeline, its
    full name (``unconditional_transformer.layers.3.feed_forward.w2``).
    """

    keep: tuple[str, ...] = ()

    KINDS: ClassVar[dict[str, type[Recipe]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        Recipe.KINDS[cls.__name__] = cls

    def __post_init__(self) -> None:
        self._set("keep", _names(type(self).__name__, "keep", self.keep))

    def _set(self, field: str, value: object) -> None:
        object.__setattr__(self, field, value)

    @property
    def name(self) -> str:
        """The variant id used everywhere (cache keys, fixtures, file names)."""
        raise NotImplementedError

    @property
    def format(self) -> str:
        """The codec format (``quantkit.codecs``) quantized linears are stored in."""
        raise NotImplementedError

    def skip_rules(self) -> tuple[str, ...]:
        """The rules that keep a tensor in higher precision, in words (printed above the skip report)."""
        rules = ["norms, embeddings, biases and other non-linear tensors keep their dtype"]
        if self.keep:
            rules.append(f"linears matching keep={list(self.keep)}")
        return tuple(rules)

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"recipe": type(self).__name__, **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}}

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace (what :attr:`hash` digests)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON and :data:`QUANTIZER_VERSION`: stable across runs and machines."""
        return hashlib.sha256(f"{self.to_json()}\nquantizer={QUANTIZER_VERSION}".encode()).hexdigest()

    @staticmethod
    def from_dict(data: object) -> Recipe:
        if not isinstance(data, dict) or not isinstance(data.get("recipe"), str):
            raise RecipeError(f'a recipe must be a JSON object with a "recipe" class name, got {data!r}')
        kind = data["recipe"]
        cls = Recipe.KINDS.get(kind)
        if cls is None:
            raise RecipeError(f"unknown recipe {kind!r}; known recipes: {', '.join(sorted(Recipe.KINDS))}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"recipe"})
        if unknown:
            raise RecipeError(f"{kind}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k != "recipe"})

    @staticmethod
    def from_json(text: str) -> Recipe:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"recipe JSON is malformed: {exc}") from exc
        return Recipe.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read a ``recipe.json``."""
    file = Path(path)
    if not file.is_file():
        raise RecipeError(f"recipe file {file} does not exist; a saved variant keeps its recipe.json beside it")
    return Recipe.from_json(file.read_text(encoding="utf-8"))


@dataclasses.dataclass(frozen=True)
class FP8Reference(Recipe):
    """Weight-only float8 e4m3 with a per-row scale, dequantized at every forward: the published FP8 layout.

    Every linear is quantized (the published checkpoint has all 211 linears of a branch in FP8).
    """

    @property
    def name(self) -> str:
        return "fp8"

    @property
    def format(self) -> str:
        return "fp8_e4m3"


@dataclasses.dataclass(frozen=True)
class Int8W8A8(Recipe):
    """Per-channel int8 weights times per-token dynamic int8 activations (the Transformer Lab build).

    ``alpha``: SmoothQuant migration strength, used only with calibration statistics (none: no smoothing).
    ``protect``: linears kept in bf16: explicit names/patterns, or ``k`` / ``"auto"`` (the k / the automatically
    chosen most fragile layers, which needs a calibration). The published build protected the 17 most fragile
    FFN down-projections (``feed_forward.w2``) per branch. ``kernel``: how ``W8A8Linear`` multiplies.
    ``min_in_features``: linears with ``in_features`` at or below it stay (torchao: int8 has no benefit there).
    """

    alpha: float = 0.5
    protect: int | tuple[str, ...] | Literal["auto"] = ()
    activation: Literal["per_token_dynamic"] = "per_token_dynamic"
    kernel: Literal["auto", "int_mm", "exact_cpu", "fake_quant"] = "auto"
    min_in_features: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        kind = type(self).__name__
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or not 0.0 <= self.alpha <= 1.0:
            raise _fail(kind, "alpha", "a number in [0, 1]", self.alpha)
        self._set("alpha", float(self.alpha))
        if isinstance(self.protect, int) and not isinstance(self.protect, bool):
            _int(kind, "protect", self.protect)
        elif self.protect != "auto":
            if not isinstance(self.protect, list | tuple):
                raise _fail(kind, "protect", 'an integer k, "auto", or a list of module names', self.protect)
            self._set("protect", _names(kind, "protect", self.protect) if self.protect else ())
        _choice(kind, "activation", self.activation, ACTIVATION_MODES)
        _choice(kind, "kernel", self.kernel, W8A8_KERNELS)
        _int(kind, "min_in_features", self.min_in_features)

    @property
    def name(self) -> str:
        return "int8_w8a8"

    @property
    def format(self) -> str:
        return "int8"

    @property
    def needs_calibration(self) -> bool:
        """``protect=k`` and ``protect="auto"`` choose layers from calibration statistics."""
        return not isinstance(self.protect, tuple)

    def skip_rules(self) -> tuple[str, ...]:
        protect = f"protect={list(self.protect)}" if isinstance(self.protect, tuple) else f"protect={self.protect!r}"
        return (
            *super().skip_rules(),
            f"linears chosen by {protect} stay bf16",
            f"linears with in_features <= {self.min_in_features}",
        )


@dataclasses.dataclass(frozen=True)
class GGUF(Recipe):
    """Weight-only GGUF block quantization (``q4_k`` or ``q8_0``) of the linears, dequantized on the fly.

    ``min_numel``: linears with fewer weights stay (ComfyUI-GGUF's threshold). Linears whose rows do not divide
    into the format's blocks (256 for q4_k, 32 for q8_0) stay too; non-linear tensors are kept F16/F32.
    """

    qtype: Literal["q4_k", "q8_0"] = "q4_k"
    min_numel: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(type(self).__name__, "qtype", self.qtype, GGUF_QTYPES)
        _int(type(self).__name__, "min_numel", self.min_numel)

    @property
    def name(self) -> str:
        return self.qtype

    @property
    def format(self) -> str:
        return self.qtype

    @property
    def block(self) -> int:
        return {"q4_k": 256, "q8_0": 32}[self.qtype]

    def skip_rules(self) -> tuple[str, ...]:
        return (
            *super().skip_rules(),
            f"linears with fewer than {self.min_numel} weights",
            f"linears whose row length is not a multiple of {self.block} ({self.qtype} block)",
        )


@dataclasses.dataclass(frozen=True)
class NF4(Recipe):
    """bitsandbytes NF4: 4-bit normal-float codes in blocks of ``blocksize`` over the flattened weight.

    ``double_quant`` quantizes the block absmaxes to 8 bits (bitsandbytes ``compress_statistics``).
    """

    blocksize: int = 64
    double_quant: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(
            type(self).__name__, "blocksize", _int(type(self).__name__, "blocksize", self.blocksize), NF4_BLOCKSIZES
        )
        if not isinstance(self.double_quant, bool):
            raise _fail(type(self).__name__, "double_quant", "true or false", self.double_quant)

    @property
    def name(self) -> str:
        return "nf4"

    @property
    def format(self) -> str:
        return "nf4"
