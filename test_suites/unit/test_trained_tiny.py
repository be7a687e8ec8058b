"""The embedded default is a small Ideogram 4 trained on CPU to draw the default study's text (issue 14).

Whether it draws legible text is a gate of the ``tiny`` profile (FP8 OCR exact match, ``test_suites/ocr``); here: it
is the default, it is made of diffusers' real classes, its layers give every format and the fragility ranking
something to work on, it is small and says how it was made, and the training script rebuilds and resumes.
"""

import json

import pytest
from diffusers import AutoencoderKLFlux2, Ideogram4Pipeline, Ideogram4Transformer2DModel
from torch import nn
from transformers import Qwen3VLModel

from quantkit.pipelines import ideogram4
from quantkit.pipelines.ideogram4 import PRESETS, check_caption_fits, load_pipeline
from quantkit.prompts.benchmark import load_benchmark
from quantkit.training import tiny_text

MODEL = ideogram4.TINY_MODEL_DIR


@pytest.fixture(scope="module")
def pipe() -> Ideogram4Pipeline:
    return load_pipeline("tiny")


def test_tiny_is_the_trained_model_and_tiny_random_the_plumbing_one(monkeypatch):
    monkeypatch.delenv("QUANTKIT_IDEOGRAM4_DIR", raising=False)
    assert ideogram4.model_dir(None) == ideogram4.model_dir("tiny") == MODEL
    assert ideogram4.model_dir("tiny-random") == ideogram4.TINY_RANDOM_MODEL_DIR != MODEL


def test_it_is_made_of_the_real_classes_with_a_4x_vae(pipe):
    assert isinstance(pipe, Ideogram4Pipeline)
    assert isinstance(pipe.transformer, Ideogram4Transformer2DModel)
    assert isinstance(pipe.unconditional_transformer, Ideogram4Transformer2DModel)
    assert isinstance(pipe.vae, AutoencoderKLFlux2)
    assert isinstance(pipe.text_encoder, Qwen3VLModel)
    assert pipe.vae_scale_factor == 4
    assert pipe.transformer.config.in_channels == pipe.vae.config.latent_channels * 4


def test_big_linears_have_256_wide_rows_and_every_branch_has_several_ffn_down_projections(pipe):
    for branch in (pipe.transformer, pipe.unconditional_transformer):
        linears = {name: m for name, m in branch.named_modules() if isinstance(m, nn.Linear)}
        w2 = [name for name in linears if name.endswith("feed_forward.w2")]
        assert len(w2) >= 3
        for name, linear in linears.items():
            if ".attention." in name or ".feed_forward." in name:  # adaln_modulation (64 wide) exercises skip rules
                assert linear.in_features % 256 == 0, name


def test_committed_weights_are_small_and_say_how_they_were_made():
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert size <= 25_000_000
    provenance = json.loads((MODEL / "provenance.json").read_text())
    assert provenance["script"].startswith("quantkit.training.tiny_text")
    assert provenance["seed"] == 0
    assert provenance["dit_steps"] > 0 and provenance["vae_steps"] > 0
    assert set(provenance["versions"]) >= {"torch", "diffusers", "transformers"}


def test_every_benchmark_caption_fits_the_text_samplers_token_budget(pipe):
    for prompt in load_benchmark("benchmark-v1"):
        check_caption_fits(pipe, prompt, PRESETS["TINY_TEXT"])


def test_training_rebuilds_from_a_seed_and_resumes_from_its_checkpoint(tmp_path):
    args = ["--out", str(tmp_path), "--generated", "8", "--vae-steps", "3", "--vae-batch", "2"]
    args += ["--dit-minutes", "0.02", "--batch", "2", "--no-final-eval"]
    assert tiny_text.main(args) == 0
    provenance = json.loads((tmp_path / "model" / "provenance.json").read_text())
    assert provenance["vae_steps"] == 3 and provenance["dit_steps"] >= 1
    again = tiny_text.main(args)  # a finished run resumes and only rewrites the model
    assert again == 0
    reloaded = load_pipeline(tmp_path / "model")
    assert reloaded.vae_scale_factor == 4
