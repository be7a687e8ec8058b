"""A cache writer process for the concurrency test (a light module: spawned workers import only the cache)."""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from quantkit.store.cache import ImageCache, ImageKey

SHARED_KEY = ImageKey(
    "w" * 64, "none", "", "", "g" * 64, '{"high_level_description":"A fox."}', 7, "{}", (64, 64), "{}"
)


def noise_image(seed: int, size: int = 16) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def own_key(writer: int, round_: int) -> ImageKey:
    return dataclasses.replace(SHARED_KEY, seed=1_000_000 + 1000 * writer + round_)  # never the shared seed


def hammer(root: str, writer: int, rounds: int) -> list[str]:
    """Overwrite the shared entry with this writer's image (its id in ``seconds``), write an entry of its own, and
    read the shared entry back; report every read that is missing or not one writer's whole image."""
    cache = ImageCache(root)
    problems = []
    for round_ in range(rounds):
        cache.store(SHARED_KEY, noise_image(writer, 64), seconds=float(writer), peak_memory_bytes=None)
        cache.store(own_key(writer, round_), noise_image(round_), seconds=0.0, peak_memory_bytes=None)
        hit = cache.load(SHARED_KEY)
        if hit is None:
            problems.append(f"writer {writer} round {round_}: shared entry unreadable")
        elif not np.array_equal(np.asarray(hit.image), np.asarray(noise_image(int(hit.seconds), 64))):
            problems.append(f"writer {writer} round {round_}: shared entry mixes writers")
    return problems
