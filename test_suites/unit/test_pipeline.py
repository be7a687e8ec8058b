"""The Ideogram 4 adapter on the embedded tiny pipeline: presets, loading, reproducible generation."""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLFlux2, Ideogram4Pipeline, Ideogram4Transformer2DModel
from safetensors.torch import load_file
from transformers import Qwen3VLModel

from quantkit import GGUF, NF4, FP8Reference, Int8W8A8, environment
from quantkit.errors import CaptionError, MissingWeightsError, QuantkitError
from quantkit.pipelines import ideogram4
from quantkit.pipelines.ideogram4 import PRESETS, SamplerSettings, generate, load_pipeline
from quantkit.pipelines.tiny import TINY_TRANSFORMER_CONFIG, save_tiny_pipeline
from quantkit.prompts.prompt import Prompt
from quantkit.store.cache import ImageCache, weights_hash
from quantkit.study import apply_recipe

FAST = SamplerSettings("TEST_2", 2, (7.0, 3.0), mu=0.5, std=1.75, max_sequence_length=128)
SMALL = (64, 64)
FOX = Prompt("fox", "animals", "a fox", '{"high_level_description":"A red fox in snow."}')
SIGN = Prompt("sign", "text", "a sign", '{"high_level_description":"A neon sign that reads OPEN."}', ("OPEN",))


def pixels(generated) -> list[np.ndarray]:
    return [np.asarray(g.image) for g in generated]


@pytest.fixture(scope="module")
def pipe() -> Ideogram4Pipeline:
    return load_pipeline("tiny-random")


def test_quality_preset_is_the_schedule_diffusers_uses_by_default():
    defaults = inspect.signature(Ideogram4Pipeline.__call__).parameters
    quality = PRESETS["V4_QUALITY_48"]
    assert quality.steps == defaults["num_inference_steps"].default
    assert quality.guidance_schedule == tuple(defaults["guidance_schedule"].default)
    assert (quality.mu, quality.std) == (defaults["mu"].default, defaults["std"].default)


@pytest.mark.parametrize(("name", "steps", "polish", "mu", "std"), [
    ("V4_QUALITY_48", 48, 3, 0.0, 1.5),
    ("V4_DEFAULT_20", 20, 2, 0.0, 1.75),
    ("V4_TURBO_12", 12, 1, 0.5, 1.75),
    ("SMOKE", 4, 1, 0.5, 1.75),
])  # fmt: skip
def test_presets_guide_at_7_first_and_polish_at_3_on_the_last_steps(name, steps, polish, mu, std):
    preset = PRESETS[name]
    assert (preset.steps, preset.mu, preset.std) == (steps, mu, std)
    assert preset.guidance_schedule == (7.0,) * (steps - polish) + (3.0,) * polish


def test_loop_order_schedule_is_reversed_into_step_order():
    settings = SamplerSettings.from_loop_order("x", (1.0, 2.0, 3.0), mu=0.0, std=1.0)
    assert settings.guidance_schedule == (3.0, 2.0, 1.0)


def test_a_schedule_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="one guidance weight per step"):
        SamplerSettings("bad", 3, (7.0, 3.0), mu=0.0, std=1.0)


def test_settings_survive_a_dict_round_trip():
    assert SamplerSettings.from_dict(PRESETS["SMOKE"].to_dict()) == PRESETS["SMOKE"]


def test_the_pipeline_receives_the_schedule_in_step_order(pipe, monkeypatch):
    seen = []
    step = pipe.scheduler.step

    def spy(*args, **kwargs):
        seen.append(pipe.guidance_scale)
        return step(*args, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", spy)
    generate(pipe, [FOX], dataclasses.replace(PRESETS["SMOKE"], max_sequence_length=128), resolution=SMALL)
    assert seen == [7.0, 7.0, 7.0, 3.0]


def test_tiny_pipeline_is_made_of_the_real_classes(pipe):
    assert isinstance(pipe.text_encoder, Qwen3VLModel)
    assert len(pipe.text_encoder.language_model.layers) == 36
    assert isinstance(pipe.vae, AutoencoderKLFlux2)
    assert pipe.vae.config.latent_channels * 4 == TINY_TRANSFORMER_CONFIG["in_channels"]
    for transformer in (pipe.transformer, pipe.unconditional_transformer):
        assert isinstance(transformer, Ideogram4Transformer2DModel)
        assert {k: transformer.config[k] for k in TINY_TRANSFORMER_CONFIG} == {
            k: list(v) if isinstance(v, tuple) else v for k, v in TINY_TRANSFORMER_CONFIG.items()
        }
    assert not torch.equal(
        pipe.transformer.layers[0].attention.to_q.weight, pipe.unconditional_transformer.layers[0].attention.to_q.weight
    )


def weight_differences(folder_a: Path, folder_b: Path) -> tuple[int, int, float]:
    """(tensors compared, tensors that differ, largest absolute difference) between two saved pipelines."""
    compared, differing, largest = 0, 0, 0.0
    for file_a in sorted(folder_a.rglob("*.safetensors")):
        a, b = load_file(file_a), load_file(folder_b / file_a.relative_to(folder_a))
        for name in sorted(a.keys() | b.keys()):
            compared += 1
            if name not in a or name not in b or a[name].shape != b[name].shape:
                differing, largest = differing + 1, math.inf
            elif not torch.equal(a[name], b[name]):
                differing += 1
                largest = max(largest, float((a[name].float() - b[name].float()).abs().max()))
    return compared, differing, largest


def test_the_tiny_model_script_is_deterministic(tmp_path):
    cache = ImageCache(tmp_path / "cache")
    first, again = save_tiny_pipeline(tmp_path / "first"), save_tiny_pipeline(tmp_path / "again")
    assert weights_hash(first, cache) == weights_hash(again, cache)


def test_committed_tiny_model_is_what_the_script_makes_under_the_locked_versions(tmp_path):
    """The committed random tiny model is the source of truth (the trained default has its own rebuild test).
    Under the locked versions the script reproduces it byte for byte; under other releases (torch's or
    transformers' initialisers may change) the test reports how far the rebuild is instead of failing: the committed
    file, not the script, is what every test runs."""
    committed = ideogram4.TINY_RANDOM_MODEL_DIR
    assert sum(p.stat().st_size for p in committed.rglob("*") if p.is_file()) < 10_000_000
    rebuilt = save_tiny_pipeline(tmp_path / "tiny")
    cache = ImageCache(tmp_path / "cache")
    if weights_hash(rebuilt, cache) == weights_hash(committed, cache):
        return
    drift = environment.lock_drift(packages=("torch", "transformers", "diffusers", "safetensors", "tokenizers"))
    compared, differing, largest = weight_differences(committed, rebuilt)
    assert drift, (
        f"under the locked versions the script no longer reproduces {committed}: {differing} of {compared} tensors "
        f"differ (max |difference| {largest:.3g}); rebuild it deliberately with `python -m quantkit.pipelines.tiny`"
    )
    versions = ", ".join(f"{name} {installed} (locked {locked})" for name, locked, installed in drift)
    how = (
        f"{differing} of {compared} tensors differ (max |difference| {largest:.3g})"
        if differing
        else f"all {compared} tensors are identical, other files differ (the configs record library versions)"
    )
    pytest.skip(f"{versions}: rebuilding the tiny model, {how}; the committed weights stay the source of truth")


def test_same_seed_and_settings_give_bit_identical_images(pipe):
    first = pixels(generate(pipe, [FOX], FAST, resolution=SMALL))
    again = pixels(generate(load_pipeline("tiny-random"), [FOX], FAST, resolution=SMALL))
    assert np.array_equal(first[0], again[0])


def test_an_image_does_not_depend_on_the_other_prompts_or_their_order(pipe):
    alone = pixels(generate(pipe, [SIGN], FAST, resolution=SMALL))
    together = pixels(generate(pipe, [FOX, SIGN], FAST, resolution=SMALL))
    reversed_ = pixels(generate(pipe, [SIGN, FOX], FAST, resolution=SMALL))
    assert np.array_equal(alone[0], together[1])
    assert np.array_equal(together[0], reversed_[1])
    assert not np.array_equal(together[0], together[1])


def test_the_seed_comes_from_the_prompt(pipe):
    reseeded = Prompt(FOX.id, FOX.category, FOX.raw, FOX.caption, seed=FOX.seed + 1)
    a, b = pixels(generate(pipe, [FOX, reseeded], FAST, resolution=SMALL))
    assert not np.array_equal(a, b)


def test_generated_images_have_the_requested_size_and_report_their_cost(pipe):
    (image,) = generate(pipe, [FOX], FAST, resolution=(64, 128))
    assert image.image.mode == "RGB" and image.image.size == (128, 64)
    assert (image.prompt_id, image.seed) == (FOX.id, FOX.seed)
    assert image.seconds > 0 and image.peak_memory_bytes is None and not image.cached


@pytest.mark.parametrize("offload", ["text_encoder", "model"])
def test_offloading_does_not_change_the_image(pipe, offload, tmp_path):
    """Disk offload leaves uninitialised memory in place of offloaded weights, so a submodule the pipeline calls
    without its onload hook (the encoder's embed_tokens, layers, rotary_emb) would change the image."""
    plain = pixels(generate(pipe, [FOX], FAST, resolution=SMALL))
    offloaded_pipe = load_pipeline("tiny-random", offload=offload, offload_dir=tmp_path)
    offloaded = pixels(generate(offloaded_pipe, [FOX], FAST, resolution=SMALL))
    assert np.array_equal(plain[0], offloaded[0])
    assert list(tmp_path.glob("*/*.safetensors"))


def test_unknown_offload_mode_is_refused():
    with pytest.raises(QuantkitError, match="offload mode"):
        load_pipeline("tiny-random", offload="disk")


def test_caption_over_the_token_budget_is_refused_before_generating(pipe):
    long = Prompt("long", "x", "x", '{"high_level_description":"' + "word " * 400 + '"}')
    with pytest.raises(CaptionError, match=r"'long'.*over the 128-token budget"):
        generate(pipe, [long], FAST, resolution=SMALL)


def test_empty_caption_is_refused(pipe):
    with pytest.raises(CaptionError, match="empty"):
        generate(pipe, [Prompt("e", "x", "x", " ")], FAST, resolution=SMALL)


def test_missing_model_folder_names_the_variable_to_set(tmp_path):
    with pytest.raises(MissingWeightsError, match="QUANTKIT_IDEOGRAM4_DIR"):
        load_pipeline(tmp_path)


def test_without_a_source_the_tiny_default_is_used(monkeypatch):
    monkeypatch.delenv("QUANTKIT_IDEOGRAM4_DIR", raising=False)
    assert ideogram4.model_dir(None) == ideogram4.TINY_MODEL_DIR


@pytest.mark.parametrize(
    "recipe",
    [FP8Reference(), Int8W8A8(), GGUF(qtype="q4_k"), GGUF(qtype="q8_0"), NF4()],
    ids=lambda recipe: recipe.name,
)
def test_quantized_variants_of_the_tiny_pipeline_generate_valid_images(pipe, recipe):
    plain = pixels(generate(pipe, [FOX], FAST, resolution=SMALL))[0]
    variant = load_pipeline("tiny-random")
    apply_recipe(variant, recipe)
    (image,) = generate(variant, [FOX], FAST, resolution=SMALL)
    quantized = np.asarray(image.image)
    assert quantized.shape == plain.shape and quantized.std() > 1.0
    assert not np.array_equal(quantized, plain)


def test_a_pipeline_that_produces_nan_is_an_error_not_a_black_image():
    broken = load_pipeline("tiny-random")
    with torch.no_grad():
        broken.transformer.layers[0].feed_forward.w2.weight.fill_(float("nan"))
    with pytest.raises(QuantkitError, match="NaN/Inf pixels"):
        generate(broken, [FOX], FAST, resolution=SMALL)
