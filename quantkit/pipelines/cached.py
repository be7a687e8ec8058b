"""Generation through the image cache: each image is looked up by its key and generated only on a miss."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diffusers import Ideogram4Pipeline

from quantkit.pipelines.ideogram4 import TINY_RESOLUTION, GeneratedImage, SamplerSettings, generate, runtime_fingerprint
from quantkit.prompts.prompt import Prompt
from quantkit.store.cache import ImageCache, ImageKey, canonical_json, weights_hash

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# The code a quantized image depends on besides the recipe itself (modules that do not exist yet are skipped).
QUANTIZER_SOURCES = ("codecs", "nn", "io", "calibrate", "quantize.py", "recipes.py")


@functools.cache
def quantizer_version() -> str:
    """sha256 of the quantizer source files: an edit to a codec or layer invalidates the quantized images."""
    digest = hashlib.sha256()
    for name in QUANTIZER_SOURCES:
        path = PACKAGE_ROOT / name
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []:
            digest.update(source.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


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
) -> ImageKey:
    return ImageKey(
        weights_hash=weights,
        recipe=recipe_id(recipe),
        quantizer_version="" if recipe is None else quantizer_version(),
        caption=prompt.caption,
        seed=prompt.seed,
        sampler=canonical_json(settings.to_dict()),
        resolution=(int(resolution[0]), int(resolution[1])),
        runtime=runtime,
    )


def pipeline_weights_hash(pipe: Ideogram4Pipeline, cache: ImageCache) -> str:
    """The weights hash of the folder the pipeline was loaded from."""
    return weights_hash(pipe.name_or_path, cache)


def generate_cached(
    pipe: Ideogram4Pipeline,
    prompts: Sequence[Prompt],
    settings: SamplerSettings,
    *,
    recipe: Any = None,
    resolution: tuple[int, int] = TINY_RESOLUTION,
    cache: ImageCache | None = None,
    progress: Callable[[GeneratedImage], None] | None = None,
) -> list[GeneratedImage]:
    """Like :func:`generate`, but every image whose key is cached is read back (``cached=True``) instead of
    generated; fresh images are stored. ``recipe`` is the variant already applied to ``pipe`` (None if unquantized).
    """
    cache = cache or ImageCache()
    weights = pipeline_weights_hash(pipe, cache)
    runtime = runtime_fingerprint(pipe)
    results: list[GeneratedImage] = []
    for prompt in prompts:
        key = image_key(
            weights=weights, recipe=recipe, prompt=prompt, settings=settings, resolution=resolution, runtime=runtime
        )
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
