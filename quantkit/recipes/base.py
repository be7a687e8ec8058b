"""The recipe base class: a small frozen config object (torchao style) that says what to quantize and how.

A recipe is data plus the few hooks ``quantize_`` calls per layer (:meth:`Recipe.keep_reason`,
:meth:`Recipe.build`, ...): ``recipe.json`` stores it, and its ``hash`` keys every cache entry made from it. Each
recipe lists its skip rules as fields (``keep`` patterns, size thresholds) so the tensors that stay in higher
precision are explicit; :meth:`Recipe.skip_rules` states them in words.

Serialised form: ``{"recipe": "<ClassName>", <field>: <value>, ...}``. An unknown class, an unknown field or a
value of the wrong type raises :class:`~quantkit.errors.RecipeError` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from quantkit.atomic import write_json
from quantkit.errors import RecipeError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from quantkit.nn.base import QuantizedLinear
    from quantkit.quantize import Calibration

# Bump whenever the bytes a recipe produces change (codec or layer changes), so cache keys change with them.
QUANTIZER_VERSION = "1"


def fail(recipe: str, field: str, expected: str, value: object) -> RecipeError:
    return RecipeError(f"{recipe}.{field}: expected {expected}, got {value!r} ({type(value).__name__})")


def names(recipe: str, field: str, value: object) -> tuple[str, ...]:
    """A tuple of module names / fnmatch patterns; a list (as JSON gives) is accepted."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise fail(recipe, field, "a list of module names or fnmatch patterns", value)


def integer(recipe: str, field: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(recipe, field, f"an integer >= {minimum}", value)
    return value


def choice(recipe: str, field: str, value: object, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, bool) or value not in choices:
        raise fail(recipe, field, f"one of {', '.join(map(repr, choices))}", value)
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
        self._set("keep", names(type(self).__name__, "keep", self.keep))

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

    # -- the hooks quantize_ calls (the defaults suit a weight-only format) ---------------------------------------
    @property
    def needs_calibration(self) -> bool:
        """Whether ``quantize_`` must be given calibration statistics for this recipe."""
        return False

    def protected(self, calibration: Calibration | None) -> tuple[str, ...]:
        """Names or fnmatch patterns of linears kept in their float dtype as protection (none by default)."""
        return ()

    def keep_reason(self, linear: nn.Linear) -> str | None:
        """Why this format keeps ``linear`` unquantized (too small, rows that do not divide into blocks), or None."""
        return None

    def smoothing(self, layer: str, linear: nn.Linear, calibration: Calibration | None) -> torch.Tensor | None:
        """The per-input-channel smoothing vector of ``layer``, or None (weight-only formats smooth nothing)."""
        return None

    def quantized_reason(self, smooth: torch.Tensor | None) -> str:
        """How the skip report describes a quantized layer."""
        return "quantized"

    def build(self, linear: nn.Linear, *, name: str, smooth: torch.Tensor | None) -> QuantizedLinear:
        """The quantized layer that replaces ``linear`` (``name`` appears in error messages)."""
        raise NotImplementedError(f"{type(self).__name__} does not say which layer it builds")

    def packed_bytes(self, out_features: int, in_features: int) -> int:
        """Bytes of one quantized ``[out, in]`` weight, from the format's layout (what ``quantkit plan`` counts on
        the meta device, without quantizing)."""
        raise RecipeError(f"{type(self).__name__} has no byte layout: define packed_bytes for quantkit plan")

    def finish(self, models: Mapping[str, nn.Module], calibration: Calibration | None) -> None:
        """Runs once after every layer is swapped in (INT8 folds its run-time smoothing here)."""

    def configure_loaded(self, layers: Iterable[QuantizedLinear]) -> None:
        """Sets run-time options a checkpoint does not store on layers ``load_variant`` installed."""

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
