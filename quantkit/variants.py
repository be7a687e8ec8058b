"""Save and load a quantized model or pipeline: a directory with ``recipe.json`` and one checkpoint file.

The container is the registered variant's ``checkpoint`` (:mod:`quantkit.recipes.registry`). GGUF variants write
one file per transformer copy in ComfyUI's layout (original key names, fused ``qkv``,
``general.architecture = "ideogram4"``), so ComfyUI-GGUF and :func:`quantkit.io.gguf.load_transformer` (diffusers)
load them: ``ideogram4-<name>-cond.gguf`` and ``ideogram4-<name>-uncond.gguf`` for a pipeline,
``ideogram4-<name>.gguf`` for a single model; the recipe and the versions that made it are in the metadata.
safetensors variants (int8, fp8, nf4) write ``ideogram4-<name>.safetensors`` (recipe in the header; on a pipeline
the keys carry the branch prefix, ``transformer.`` / ``unconditional_transformer.``). Every tensor of the quantized
transformers is stored, packed and plain, so loading into a fresh model or pipeline of the same config gives
identical weights and outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError, RecipeError
from quantkit.io.gguf import read_gguf, storage_dtype, write_gguf
from quantkit.io.ideogram_checkpoints import diffusers_tensors, original_key, original_tensors
from quantkit.io.safetensors import load_packed, save_packed
from quantkit.nn import QuantizedLinear
from quantkit.quantize import plan_packed_load, transformers_of
from quantkit.recipes import QUANTIZER_VERSION, Recipe, load_recipe, variant_spec

RECIPE_FILE = "recipe.json"
RECIPE_KEY = "quantkit.recipe"
TARGET_KEY = "quantkit.target"
VERSION_KEY = "quantkit.quantizer_version"
BRANCH_KEY = "quantkit.branch"
# The two CFG copies, named as community Ideogram 4 GGUFs name them (diffusion/cond, diffusion/uncond).
GGUF_COPIES = {"transformer.": "cond", "unconditional_transformer.": "uncond"}


def checkpoint_path(path: str | os.PathLike[str], recipe: Recipe, copy: str | None = None) -> Path:
    """The checkpoint file of a saved variant; ``copy`` (``"cond"`` / ``"uncond"``) picks a pipeline's GGUF file."""
    suffix = _container(recipe)
    return Path(path) / f"ideogram4-{recipe.name}{'' if copy is None else '-' + copy}.{suffix}"


def save_variant(target: object, recipe: Recipe, path: str | os.PathLike[str]) -> Path:
    """Write ``target`` (quantized with ``recipe``) to the directory ``path``; return the checkpoint file (for a
    pipeline's GGUF, the conditional copy; the unconditional one sits beside it)."""
    models = transformers_of(target)
    metadata = {RECIPE_KEY: recipe.to_json(), TARGET_KEY: _target_kind(models), VERSION_KEY: QUANTIZER_VERSION}
    if _container(recipe) == "gguf":
        files = [_save_gguf_copy(path, recipe, prefix, model, metadata) for prefix, model in models.items()]
        recipe.save(Path(path) / RECIPE_FILE)
        return files[0]
    tensors: dict[str, Packed | torch.Tensor] = {}
    for prefix, model in models.items():
        tensors |= {prefix + key: value for key, value in _variant_tensors(model, recipe, prefix).items()}
    checkpoint = checkpoint_path(path, recipe)
    save_packed(checkpoint, tensors, metadata)
    recipe.save(Path(path) / RECIPE_FILE)
    return checkpoint


def _save_gguf_copy(
    path: str | os.PathLike[str], recipe: Recipe, prefix: str, model: nn.Module, metadata: dict[str, str]
) -> Path:
    """One transformer copy as ComfyUI keys it, kept tensors in :func:`storage_dtype`, recipe and versions inside."""
    from importlib.metadata import version

    checkpoint = checkpoint_path(path, recipe, GGUF_COPIES.get(prefix))
    linears = {
        original_key(f"{n}.weight") for n, m in model.named_modules() if isinstance(m, nn.Linear | QuantizedLinear)
    }
    fused = original_tensors(_variant_tensors(model, recipe, prefix), checkpoint)
    tensors = {
        key: v if isinstance(v, Packed) else v.to(storage_dtype(v, linear_weight=key in linears))
        for key, v in fused.items()
    }
    extra = {f"quantkit.{name}_version": version(name) for name in ("quantkit", "torch", "diffusers", "gguf")}
    write_gguf(checkpoint, tensors, {**metadata, BRANCH_KEY: prefix.rstrip(".") or "transformer", **extra})
    return checkpoint


def load_variant(target: object, path: str | os.PathLike[str]) -> Recipe:
    """Install the variant saved at ``path`` into ``target`` (a fresh model or pipeline of the same config)."""
    recipe = load_recipe(Path(path) / RECIPE_FILE)
    models = transformers_of(target)
    by_model: dict[str, dict[str, Packed | torch.Tensor]] = {prefix: {} for prefix in models}
    if _container(recipe) == "gguf":
        for prefix in models:
            checkpoint = checkpoint_path(path, recipe, GGUF_COPIES.get(prefix))
            tensors = _read_checked(checkpoint, path, recipe, models)
            by_model[prefix] = diffusers_tensors(tensors, checkpoint)
    else:
        checkpoint = checkpoint_path(path, recipe)
        tensors = _read_checked(checkpoint, path, recipe, models)
        for key, value in tensors.items():
            prefix = next((p for p in sorted(models, key=len, reverse=True) if key.startswith(p)), None)
            if prefix is None:
                raise CheckpointError(f"{checkpoint}: tensor {key!r} belongs to none of {sorted(models)}")
            by_model[prefix][key[len(prefix) :]] = value
    loads = [plan_packed_load(model, by_model[prefix]) for prefix, model in models.items()]  # check all first
    for load in loads:
        load.apply()
        recipe.configure_loaded(load.layers.values())
    return recipe


def _container(recipe: Recipe) -> str:
    """The checkpoint container of ``recipe``'s registered variant: ``"gguf"`` or ``"safetensors"``."""
    return variant_spec(recipe.name).checkpoint


def _read_checked(
    checkpoint: Path, path: str | os.PathLike[str], recipe: Recipe, models: dict[str, nn.Module]
) -> dict[str, Packed | torch.Tensor]:
    """The checkpoint's tensors, after checking it holds ``recipe`` and was saved from the same kind of target."""
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: missing; the variant at {path} is incomplete (re-run save_variant)")
    tensors, metadata = read_gguf(checkpoint) if _container(recipe) == "gguf" else load_packed(checkpoint)
    _check_metadata(checkpoint, metadata, recipe)
    if metadata[TARGET_KEY] != _target_kind(models):
        raise CheckpointError(
            f"{checkpoint}: saved from a {metadata[TARGET_KEY]} but loading into a {_target_kind(models)}; "
            "load a pipeline variant into a pipeline and a model variant into a model"
        )
    return tensors


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
