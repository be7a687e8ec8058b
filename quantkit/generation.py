"""Generation through the image cache: each image is looked up by its key and generated only on a miss.

An image's key holds the code that made it: the quantizer files its variant runs (declared in the variant registry,
:attr:`quantkit.recipes.VariantSpec.sources`, plus :data:`quantkit.recipes.registry.COMMON_SOURCES`) and the
generation code path. Above the pipelines, the quantizer and the cache, which it joins.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diffusers import Ideogram4Pipeline

from quantkit import gguf_variant
from quantkit.pipelines.ideogram4 import TINY_RESOLUTION, GeneratedImage, SamplerSettings, generate, runtime_fingerprint
from quantkit.prompts.prompt import Prompt
from quantkit.recipes import known_variants, variant_spec
from quantkit.recipes.registry import COMMON_SOURCES
from quantkit.store.cache import ImageCache, ImageKey, canonical_json, weights_hash

PACKAGE_ROOT = Path(__file__).resolve().parent
# The generation code path of every image: quantkit's adapter (seeding, sampler arguments, decoding).
GENERATION_SOURCES = ("pipelines/ideogram4.py",)


def source_files(names: Sequence[str]) -> list[Path]:
    """The .py files ``names`` stand for (paths under the package; a folder means its .py files), sorted."""
    files = set()
    for name in names:
        path = PACKAGE_ROOT / name  # an absolute name stays as it is
        files.update(path.rglob("*.py") if path.is_dir() else [path] if path.is_file() else [])
    return sorted(files)


def _digest(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for source in files:
        label = source.relative_to(PACKAGE_ROOT).as_posix() if source.is_relative_to(PACKAGE_ROOT) else source.name
        digest.update(label.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def quantizer_sources(variant: str) -> tuple[str, ...]:
    """The quantizer files variant ``variant`` runs: the common files and its own (a ``gguf:`` file set's are
    :data:`quantkit.gguf_variant.SOURCES`)."""
    own = gguf_variant.SOURCES if gguf_variant.is_gguf_spec(variant) else variant_spec(variant).sources
    return (*COMMON_SOURCES, *own)


@functools.cache
def quantizer_version(variant: str | None = None) -> str:
    """sha256 of the quantizer code a variant runs (every registered variant's when ``variant`` is None): an edit
    to a codec or layer invalidates exactly the images of the variants that run it."""
    if variant is not None:
        return _digest(source_files(quantizer_sources(variant)))
    return _digest(source_files([n for v in (*known_variants(), gguf_variant.PREFIX) for n in quantizer_sources(v)]))


def generation_sources(pipe: Ideogram4Pipeline) -> list[Path]:
    """The files that turn a caption and seed into pixels besides the weights: quantkit's adapter and the diffusers /
    transformers modules of the pipeline, its scheduler (the sampler), both transformers, VAE, text encoder,
    tokenizer and image processor."""
    parts = [pipe, pipe.scheduler, pipe.transformer, pipe.unconditional_transformer, pipe.vae, pipe.text_encoder]
    parts += [pipe.tokenizer, pipe.image_processor]
    modules = {sys.modules[type(part).__module__].__file__ for part in parts}
    return source_files(GENERATION_SOURCES) + sorted(Path(m) for m in modules if m)


@functools.cache
def _generation_digest(signature: tuple[tuple[Path, int, int], ...]) -> str:
    return _digest([path for path, _, _ in signature])


def generation_code_version(pipe: Ideogram4Pipeline) -> str:
    """sha256 of :func:`generation_sources`: editing how a seed is used, or the sampler, re-generates every image.
    Remembered per file size and mtime, so the files are read once per process unless they change."""
    files = generation_sources(pipe)
    return _generation_digest(tuple((p, p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def recipe_id(recipe: Any) -> str:
    """``"none"`` for the unquantized pipeline, else ``"<name>@<hash>"`` (``hash`` may be a property or method)."""
    if recipe is None:
        return "none"
    recipe_hash = recipe.hash() if callable(recipe.hash) else recipe.hash
    return f"{recipe.name}@{recipe_hash}"


def image_key(
    *,
    weights: str,
    recipe: Any,
    prompt: Prompt,
    settings: SamplerSettings,
    resolution: tuple[int, int],
    runtime: str,
    generation_code: str,
    calibration: str = "",
) -> ImageKey:
    return ImageKey(
        weights_hash=weights,
        recipe=recipe_id(recipe),
        quantizer_version="" if recipe is None else quantizer_version(recipe.name),
        calibration=calibration,
        generation_code=generation_code,
        caption=prompt.caption,
        seed=prompt.seed,
        sampler=canonical_json(settings.to_dict()),
        resolution=(int(resolution[0]), int(resolution[1])),
        runtime=runtime,
    )


def pipeline_weights_hash(pipe: Ideogram4Pipeline, cache: ImageCache) -> str:
    """The weights hash of the folder the pipeline was loaded from."""
    return weights_hash(pipe.name_or_path, cache)


def image_keys(
    pipe: Ideogram4Pipeline,
    prompts: Sequence[Prompt],
    settings: SamplerSettings,
    *,
    recipe: Any = None,
    calibration: str = "",
    resolution: tuple[int, int] = TINY_RESOLUTION,
    cache: ImageCache | None = None,
) -> list[ImageKey]:
    """The cache key of each prompt's image from ``pipe`` (quantized with ``recipe``, calibrated on the statistics
    whose identity is ``calibration``), without generating anything."""
    cache = cache or ImageCache()
    common = {
        "weights": pipeline_weights_hash(pipe, cache),
        "recipe": recipe,
        "calibration": calibration,
        "settings": settings,
        "resolution": resolution,
        "runtime": runtime_fingerprint(pipe),
        "generation_code": generation_code_version(pipe),
    }
    return [image_key(prompt=prompt, **common) for prompt in prompts]


def generate_cached(
    pipe: Ideogram4Pipeline,
    prompts: Sequence[Prompt],
    settings: SamplerSettings,
    *,
    recipe: Any = None,
    calibration: str = "",
    resolution: tuple[int, int] = TINY_RESOLUTION,
    cache: ImageCache | None = None,
    progress: Callable[[GeneratedImage], None] | None = None,
) -> list[GeneratedImage]:
    """Like :func:`generate`, but every image whose key is cached is read back (``cached=True``) instead of
    generated; fresh images are stored. ``recipe`` is the variant already applied to ``pipe`` (None if unquantized),
    ``calibration`` the identity of the statistics it was calibrated on ("" if none).
    """
    cache = cache or ImageCache()
    keys = image_keys(
        pipe, prompts, settings, recipe=recipe, calibration=calibration, resolution=resolution, cache=cache
    )
    results: list[GeneratedImage] = []
    for prompt, key in zip(prompts, keys, strict=True):
        hit = cache.load(key)
        if hit is not None:
            result = GeneratedImage(
                prompt.id, prompt.seed, hit.image, hit.seconds, hit.peak_memory_bytes, cached=True, key=key
            )
        else:
            (fresh,) = generate(pipe, [prompt], settings, resolution=resolution)
            cache.store(key, fresh.image, seconds=fresh.seconds, peak_memory_bytes=fresh.peak_memory_bytes)
            result = dataclasses.replace(fresh, key=key)
        results.append(result)
        if progress is not None:
            progress(result)
    return results
