"""The content-addressed image and score cache."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing

import cache_writers
import numpy as np
import pytest
from PIL import Image

from quantkit import generation as cached
from quantkit.generation import generate_cached, image_key, recipe_id
from quantkit.pipelines.ideogram4 import SamplerSettings, load_pipeline
from quantkit.prompts.prompt import Prompt
from quantkit.store.cache import ImageCache, ImageKey, weights_hash

FAST = SamplerSettings("TEST_2", 2, (7.0, 3.0), mu=0.5, std=1.75, max_sequence_length=128)
SMALL = (64, 64)
PROMPTS = [
    Prompt("fox", "animals", "a fox", '{"high_level_description":"A red fox in snow."}'),
    Prompt("sign", "text", "a sign", '{"high_level_description":"A neon sign that reads OPEN."}', ("OPEN",)),
]
KEY = ImageKey(
    weights_hash="w" * 64,
    recipe="none",
    quantizer_version="",
    calibration="",
    generation_code="g" * 64,
    caption='{"high_level_description":"A red fox in snow."}',
    seed=7,
    sampler='{"steps":2}',
    resolution=(64, 64),
    runtime='{"device":"cpu"}',
)
CHANGED_PARTS = {
    "weights_hash": "v" * 64,
    "recipe": "q4_k@abc",
    "quantizer_version": "0123",
    "calibration": "prompts-and-stats",
    "generation_code": "h" * 64,
    "caption": '{"high_level_description":"A red fox in rain."}',
    "seed": 8,
    "sampler": '{"steps":4}',
    "resolution": (64, 128),
    "runtime": '{"device":"cuda"}',
}


def noise_image(seed: int, size: int = 16) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


class Recipe:
    name, hash, format = "q8_0", "f00d", "q8_0"


def test_a_stored_image_comes_back_losslessly_with_its_cost(tmp_path):
    cache = ImageCache(tmp_path)
    cache.store(KEY, noise_image(1), seconds=1.5, peak_memory_bytes=123)
    hit = cache.load(KEY)
    assert same_pixels(hit.image, noise_image(1)) and (hit.seconds, hit.peak_memory_bytes) == (1.5, 123)


def test_the_cache_root_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTKIT_CACHE", str(tmp_path))
    assert ImageCache().root == tmp_path


@pytest.mark.parametrize("part", sorted(CHANGED_PARTS))
def test_changing_one_key_part_misses_only_that_entry(tmp_path, part):
    cache = ImageCache(tmp_path)
    other = dataclasses.replace(KEY, seed=99)
    cache.store(KEY, noise_image(1), seconds=1.0, peak_memory_bytes=None)
    cache.store(other, noise_image(2), seconds=1.0, peak_memory_bytes=None)
    assert cache.load(dataclasses.replace(KEY, **{part: CHANGED_PARTS[part]})) is None
    assert same_pixels(cache.load(KEY).image, noise_image(1))
    assert same_pixels(cache.load(other).image, noise_image(2))


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "swap_entries"])
def test_a_corrupted_entry_is_a_logged_miss(tmp_path, caplog, damage):
    cache = ImageCache(tmp_path)
    other = dataclasses.replace(KEY, seed=99)
    path = cache.store(KEY, noise_image(1), seconds=1.0, peak_memory_bytes=None)
    data = bytearray(path.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) - 40]
    else:  # a valid entry of another key under this key's name
        data = cache.store(other, noise_image(2), seconds=1.0, peak_memory_bytes=None).read_bytes()
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="quantkit.store.cache"):
        assert cache.load(KEY) is None
    assert "corrupted entry" in caplog.text


def test_scores_are_cached_per_image_and_metric(tmp_path):
    cache = ImageCache(tmp_path)
    assert cache.load_score(KEY, "clip") is None
    cache.store_score(KEY, "clip", 0.25)
    assert cache.load_score(KEY, "clip") == 0.25
    assert cache.load_score(KEY, "pickscore") is None
    assert cache.load_score(dataclasses.replace(KEY, seed=8), "clip") is None


def test_a_tampered_score_is_a_logged_miss(tmp_path, caplog):
    cache = ImageCache(tmp_path)
    path = cache.store_score(KEY, "clip", 0.25)
    path.write_text(path.read_text().replace("0.25", "0.35"))
    with caplog.at_level(logging.WARNING, logger="quantkit.store.cache"):
        assert cache.load_score(KEY, "clip") is None
    assert "corrupted entry" in caplog.text


def test_non_finite_scores_are_not_cached(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        ImageCache(tmp_path).store_score(KEY, "clip", float("nan"))


def test_concurrent_writers_never_leave_or_read_a_torn_entry(tmp_path):
    writers, rounds = 4, 25
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        reports = pool.starmap(cache_writers.hammer, [(str(tmp_path), w, rounds) for w in range(writers)])
    assert [line for report in reports for line in report] == []
    cache = ImageCache(tmp_path)
    final = cache.load(cache_writers.SHARED_KEY)
    assert final is not None and same_pixels(final.image, cache_writers.noise_image(int(final.seconds), 64))
    for writer in range(writers):
        for round_ in range(rounds):
            entry = cache.load(cache_writers.own_key(writer, round_))
            assert same_pixels(entry.image, cache_writers.noise_image(round_))
    assert not list(tmp_path.rglob("*.tmp"))


def test_weights_hash_follows_the_folder_contents(tmp_path):
    folder = tmp_path / "model"
    (folder / "transformer").mkdir(parents=True)
    weights = folder / "transformer" / "w.safetensors"
    weights.write_bytes(b"\x00" * 64)
    cache = ImageCache(tmp_path / "cache")
    first = weights_hash(folder, cache)
    assert weights_hash(folder, cache) == first
    weights.write_bytes(b"\x00" * 63 + b"\x01")
    assert weights_hash(folder, cache) != first


def test_recipe_ids_name_the_recipe_and_its_hash():
    assert recipe_id(None) == "none"
    assert recipe_id(Recipe()) == "q8_0@f00d"


def test_only_quantized_images_depend_on_the_quantizer_code():
    parts = {"weights": "w", "prompt": PROMPTS[0], "settings": FAST, "resolution": SMALL, "runtime": "r"}
    parts["generation_code"] = "g"
    assert image_key(recipe=None, **parts).quantizer_version == ""
    assert image_key(recipe=Recipe(), **parts).quantizer_version == cached.quantizer_version("q8_0") != ""


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny")


def test_a_second_run_with_nothing_changed_generates_nothing(pipe, tmp_path, monkeypatch):
    cache = ImageCache(tmp_path)
    first = generate_cached(pipe, PROMPTS, FAST, resolution=SMALL, cache=cache)
    calls = []
    real_generate = cached.generate
    monkeypatch.setattr(cached, "generate", lambda *a, **k: calls.append(a[1]) or real_generate(*a, **k))
    second = generate_cached(pipe, PROMPTS, FAST, resolution=SMALL, cache=cache)
    assert calls == [] and all(g.cached for g in second) and not any(g.cached for g in first)
    assert all(same_pixels(a.image, b.image) and a.key == b.key for a, b in zip(first, second, strict=True))

    reseeded = [PROMPTS[0], dataclasses.replace(PROMPTS[1], seed=PROMPTS[1].seed + 1)]
    third = generate_cached(pipe, reseeded, FAST, resolution=SMALL, cache=cache)
    assert [[p.id for p in batch] for batch in calls] == [["sign"]]
    assert [g.cached for g in third] == [True, False]


def test_a_corrupted_image_is_regenerated_never_used(pipe, tmp_path):
    cache = ImageCache(tmp_path)
    (first,) = generate_cached(pipe, PROMPTS[:1], FAST, resolution=SMALL, cache=cache)
    path = cache.image_path(first.key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    (again,) = generate_cached(pipe, PROMPTS[:1], FAST, resolution=SMALL, cache=cache)
    assert not again.cached and same_pixels(again.image, first.image)
    assert cache.load(first.key) is not None
