"""``quantkit plan``: the full-size model on the meta device, every recipe's decisions, bytes that match the published
builds, and memory per offload mode, without a single weight."""

from __future__ import annotations

import pytest
import torch

from quantkit import GGUF, NF4, FP8Reference, quantize_
from quantkit.cli import main
from quantkit.pipelines.tiny import TINY_TRANSFORMER_CONFIG, tiny_transformer
from quantkit.plan import PUBLISHED_GB, plan, plan_variant, published_recipes, real_transformers


@pytest.fixture(scope="module")
def plans():
    return {p.name: p for p in plan(protect=17)}


def test_diffusers_default_config_is_the_real_9_28b_copy():
    model = real_transformers()["transformer."]
    config = dict(model.config)
    assert config["num_attention_heads"] * config["attention_head_dim"] == 4608  # emb_dim, 18 heads of 256
    assert (config["num_layers"], config["intermediate_size"], config["adaln_dim"]) == (34, 12288, 512)
    assert (config["llm_features_dim"], config["in_channels"]) == (13 * 4096, 128)
    assert tuple(config["mrope_section"]) == (24, 20, 20) and config["rope_theta"] == 5_000_000
    assert sum(p.numel() for p in model.parameters()) == 9_279_288_448  # 9.28B, all on the meta device
    assert all(p.device.type == "meta" for p in model.parameters())


@pytest.mark.parametrize("build", list(PUBLISHED_GB))
def test_disk_size_of_both_copies_is_within_2_percent_of_the_published_build(plans, build):
    assert plans[build].disk_gb == pytest.approx(PUBLISHED_GB[build], rel=0.02)


def test_the_published_recipes_keep_what_the_builds_kept(plans):
    kept = {
        name: [r for r in p.report.kept if r.layer.startswith("transformer.") and r.reason != "norm"]
        for name, p in plans.items()
    }
    protected = [r.layer for r in kept["int8_w8a8"] if r.reason.startswith("protected")]
    assert len(protected) == 17 and all(name.endswith("feed_forward.w2") for name in protected)
    assert [r.layer for r in kept["q4_k"] if r.reason.startswith("row length")] == ["transformer.input_proj"]
    assert not [r for r in kept["q8_0"] if r.reason.startswith("row length")]


@pytest.mark.parametrize(
    "recipe", [FP8Reference(), GGUF("q4_k"), GGUF("q8_0"), NF4(), NF4(double_quant=True)], ids=lambda r: r.to_json()
)
def test_plan_bytes_and_decisions_equal_what_quantize_does_on_a_real_model(recipe):
    model = tiny_transformer(seed=0)
    real = quantize_(model, recipe)
    planned = plan_variant({"": real_transformers(TINY_TRANSFORMER_CONFIG, torch.float32)["transformer."]}, recipe)
    assert [(r.layer, r.action, r.reason) for r in planned.rows] == [(r.layer, r.action, r.reason) for r in real.rows]
    assert [r.bytes for r in planned.quantized] == [r.bytes for r in real.quantized]


def test_the_int8_ladder_scales_to_smaller_models():
    assert len(published_recipes(34)["int8_w8a8"].protect) == 17
    assert len(published_recipes(2)["int8_w8a8"].protect) == 1


def test_protect_n_without_calibration_says_what_it_would_need(plans):
    note = plans["int8_w8a8"].note
    assert "calibration statistics" in note and "calibrate_pipeline" in note and "feed_forward.w2" in note


def test_offloading_lowers_the_peak_and_decides_what_fits_a_3090(plans):
    for p in plans.values():
        none, text_encoder, model = (m.peak for m in p.memory)
        assert none > text_encoder > model
    assert not plans["fp8"].memory[0].fits  # FP8 DiTs and a bf16 Qwen3-VL-8B do not share 24 GiB
    assert plans["q4_k"].memory[1].fits and plans["int8_w8a8"].memory[1].fits


def test_cli_prints_the_table(capsys):
    assert main(["plan", "--variants", "q4_k", "--protect", "auto"]) == 0
    out = capsys.readouterr().out
    assert "q4_k" in out and "10.44" in out and "row length 128" in out
