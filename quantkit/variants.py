"""Save and load a quantized model or pipeline: a directory with ``recipe.json`` and one checkpoint file.

GGUF recipes write ``ideogram4-<name>.gguf`` (the recipe also in its metadata, as the published Q4_K/Q8_0 builds do);
int8, fp8 and nf4 write ``ideogram4-<name>.safetensors`` (recipe in the header). The checkpoint holds every tensor of
the quantized transformers, packed and plain, so loading it into a fresh model or pipeline of the same config gives
identical weights and outputs. On a pipeline the keys carry the branch prefix (``transformer.``,
``unconditional_transformer.``): both CFG branches in one file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError, RecipeError
from quantkit.io.gguf import read_gguf, write_gguf
from quantkit.io.safetensors import load_packed, save_packed
from quantkit.nn import QuantizedLinear, W8A8Linear
from quantkit.quantize import plan_packed_load, transformers_of
from quantkit.recipes import GGUF, QUANTIZER_VERSION, Int8W8A8, Recipe, load_recipe

RECIPE_FILE = "recipe.json"
RECIPE_KEY = "quantkit.recipe"
TARGET_KEY = "quantkit.target"
VERSION_KEY = "quantkit.quantizer_version"


def checkpoint_path(path: str | os.PathLike[str], recipe: Recipe) -> Path:
    suffix = "gguf" if isinstance(recipe, GGUF) else "safetensors"
    return Path(path) / f"ideogram4-{recipe.name}.{suffix}"


def save_variant(target: object, recipe: Recipe, path: str | os.PathLike[str]) -> Path:
    """Write ``target`` (quantized with ``recipe``) to the directory ``path``; return the checkpoint file."""
    models = transformers_of(target)
    tensors: dict[str, Packed | torch.Tensor] = {}
    for prefix, model in models.items():
        tensors |= {prefix + key: value for key, value in _variant_tensors(model, recipe, prefix).items()}
    metadata = {RECIPE_KEY: recipe.to_json(), TARGET_KEY: _target_kind(models), VERSION_KEY: QUANTIZER_VERSION}
    checkpoint = checkpoint_path(path, recipe)
    if isinstance(recipe, GGUF):
        write_gguf(checkpoint, tensors, metadata)
    else:
        save_packed(checkpoint, tensors, metadata)
    recipe.save(Path(path) / RECIPE_FILE)
    return checkpoint


def load_variant(target: object, path: str | os.PathLike[str]) -> Recipe:
    """Install the variant saved at ``path`` into ``target`` (a fresh model or pipeline of the same config)."""
    recipe = load_recipe(Path(path) / RECIPE_FILE)
    checkpoint = checkpoint_path(path, recipe)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: missing; the variant at {path} is incomplete (re-run save_variant)")
    tensors, metadata = read_gguf(checkpoint) if isinstance(recipe, GGUF) else load_packed(checkpoint)
    _check_metadata(checkpoint, metadata, recipe)
    models = transformers_of(target)
    if metadata[TARGET_KEY] != _target_kind(models):
        raise CheckpointError(
            f"{checkpoint}: saved from a {metadata[TARGET_KEY]} but loading into a {_target_kind(models)}; "
            "load a pipeline variant into a pipeline and a model variant into a model"
        )
    by_model: dict[str, dict[str, Packed | torch.Tensor]] = {prefix: {} for prefix in models}
    for key, value in tensors.items():
        prefix = next((p for p in sorted(models, key=len, reverse=True) if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(f"{checkpoint}: tensor {key!r} belongs to none of {sorted(models)}")
        by_model[prefix][key[len(prefix) :]] = value
    loads = [plan_packed_load(model, by_model[prefix]) for prefix, model in models.items()]  # check all first
    for load in loads:
        load.apply()
        if isinstance(recipe, Int8W8A8):
            for layer in load.layers.values():
                if isinstance(layer, W8A8Linear):
                    layer.kernel = recipe.kernel
    return recipe


def _variant_tensors(model: nn.Module, recipe: Recipe, prefix: str) -> dict[str, Packed | torch.Tensor]:
    """Every tensor of ``model``: each quantized layer as ``<layer>.weight`` Packed (+ bias, smooth), the rest plain."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    if not layers:
        raise RecipeError(f"{prefix or 'the model'} has no quantized layer; run quantize_(target, recipe) first")
    wrong = sorted({m.fmt for m in layers.values()} - {recipe.format})
    if wrong:
        where = prefix or "the model"
        raise RecipeError(f"{where} holds {wrong} layers but recipe {recipe.name} makes {recipe.format}")
    tensors: dict[str, Packed | torch.Tensor] = {}
    for name, layer in layers.items():
        tensors[f"{name}.weight"] = layer.packed()
        for extra in ("bias", "smooth"):
            value = getattr(layer, extra, None)
            if value is not None:
                tensors[f"{name}.{extra}"] = value
    for key, value in model.state_dict().items():
        if key.rpartition(".")[0] not in layers:
            tensors[key] = value
    return tensors


def _target_kind(models: dict[str, nn.Module]) -> str:
    return "model" if list(models) == [""] else "pipeline"


def _check_metadata(checkpoint: Path, metadata: dict[str, object], recipe: Recipe) -> None:
    stored = metadata.get(RECIPE_KEY)
    if not isinstance(stored, str) or TARGET_KEY not in metadata:
        raise CheckpointError(f"{checkpoint}: no quantkit recipe in its metadata; it was not written by save_variant")
    try:
        same = Recipe.from_json(stored) == recipe
    except RecipeError as error:
        raise CheckpointError(f"{checkpoint}: the recipe in its metadata is invalid ({error})") from error
    if not same:
        raise CheckpointError(
            f"{checkpoint}: its recipe {json.loads(stored)} differs from {RECIPE_FILE} {recipe.to_dict()}; "
            "the directory mixes two variants"
        )
