"""Calibration statistics: every linear of both branches at every step, exact values, reusable on disk."""

from __future__ import annotations

import pytest
import torch
from calibration_helpers import denoise, tiny_pair

from quantkit.calibrate.stats import CalibrationStats, StatsCollector, naive_w8a8_output
from quantkit.errors import CheckpointError, QuantkitError
from quantkit.pipelines.ideogram4 import SamplerSettings, generate, load_pipeline
from quantkit.prompts.prompt import Prompt

STEPS = 3


@pytest.fixture(scope="module")
def pair():
    return tiny_pair()


@pytest.fixture(scope="module")
def stats(pair):
    with StatsCollector(pair) as collector:
        denoise(pair["transformer"], pair["unconditional_transformer"], steps=STEPS)
    return collector.result()


def linear_names(model):
    return sorted(name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear))


def test_statistics_cover_every_linear_of_both_branches_at_every_step(pair, stats):
    assert sorted(stats.branches) == ["transformer", "unconditional_transformer"]
    for branch, model in pair.items():
        assert sorted(stats.branches[branch]) == linear_names(model)
        for name, layer in stats.branches[branch].items():
            module = model.get_submodule(name)
            assert layer.absmax.shape == (STEPS, module.in_features), name
            assert (layer.tokens > 0).all(), f"{branch}.{name} missed a step"
            assert layer.err_sq.shape == layer.ref_sq.shape == (STEPS,)


def test_the_unconditional_branch_sees_no_text(stats):
    assert stats.act_absmax("transformer", "llm_cond_proj").max() > 0
    assert stats.act_absmax("unconditional_transformer", "llm_cond_proj").max() == 0


def test_absmax_is_the_per_channel_maximum_of_the_layer_inputs(pair):
    model = pair["transformer"]
    seen = []
    handle = model.layers[1].feed_forward.w2.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        with StatsCollector(
            {"transformer": model, "unconditional_transformer": pair["unconditional_transformer"]}
        ) as c:
            denoise(model, pair["unconditional_transformer"], steps=2)
    finally:
        handle.remove()
    layer = c.result().layer("transformer", "layers.1.feed_forward.w2")
    for step, x in enumerate(seen):
        flat = x.reshape(-1, x.shape[-1])
        torch.testing.assert_close(layer.absmax[step], flat.abs().amax(dim=0))
        torch.testing.assert_close(layer.sumsq[step], flat.double().pow(2).sum(dim=0))
        assert layer.tokens[step] == flat.shape[0]


def test_recorded_error_is_naive_w8a8_of_that_layer_alone():
    model = tiny_pair()["transformer"].layers[0].feed_forward.w2
    x = torch.randn(7, model.in_features, generator=torch.Generator().manual_seed(3))
    with StatsCollector(model) as collector:
        model(x)
    layer = collector.result().layer("transformer", "")
    reference = x @ model.weight.detach().T
    expected = (naive_w8a8_output(x, model.weight) - reference).norm() / reference.norm()
    assert float(layer.relative_error()[0]) == pytest.approx(float(expected), rel=1e-6)
    assert 0 < float(expected) < 0.05


def test_runs_restart_step_counting_and_accumulate(pair):
    cond, uncond = pair["transformer"], pair["unconditional_transformer"]
    with StatsCollector(pair, measure_error=False) as collector:
        denoise(cond, uncond, steps=2, seed=0)
        collector.new_run()
        denoise(cond, uncond, steps=2, seed=1)
    result = collector.result()
    layer = result.layer("transformer", "layers.0.attention.to_q")
    assert result.runs == 2 and layer.steps == 2
    assert layer.tokens.tolist() == [2 * 21, 2 * 21]  # 5 text + 16 image tokens per call, two runs


def test_an_explicit_step_overrides_call_counting():
    model = tiny_pair()["transformer"].final_layer.linear
    with StatsCollector(model, measure_error=False) as collector:
        collector.set_step(4)
        model(torch.ones(2, model.in_features))
    layer = collector.result().layer("transformer", "")
    assert layer.steps == 5 and layer.tokens.tolist() == [0, 0, 0, 0, 2]


def test_hooks_are_removed_on_exit(pair):
    model = pair["transformer"]
    with StatsCollector(model):
        pass
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_statistics_round_trip_through_a_file(stats, tmp_path):
    path = tmp_path / "calibration.safetensors"
    stats.save(path)
    loaded = CalibrationStats.load(path)
    assert loaded.runs == stats.runs and loaded.branches.keys() == stats.branches.keys()
    for branch, layers in stats.branches.items():
        for name, layer in layers.items():
            again = loaded.layer(branch, name)
            for field in ("absmax", "sumsq", "tokens", "err_sq", "ref_sq", "weight_absmax"):
                assert torch.equal(getattr(again, field), getattr(layer, field)), (branch, name, field)


def test_a_truncated_statistics_file_is_a_clear_error(stats, tmp_path):
    path = tmp_path / "calibration.safetensors"
    stats.save(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cannot read calibration statistics"):
        CalibrationStats.load(path)
    with pytest.raises(CheckpointError, match="do not exist"):
        CalibrationStats.load(tmp_path / "missing.safetensors")


def test_asking_for_an_unknown_branch_names_the_known_ones(stats):
    with pytest.raises(QuantkitError, match="unconditional_transformer"):
        stats.layer("uncond", "input_proj")


def test_a_tiny_pipeline_run_covers_every_step_of_both_branches():
    pipe = load_pipeline("tiny")
    settings = SamplerSettings("TEST_3", 3, (7.0, 7.0, 3.0), mu=0.5, std=1.75, max_sequence_length=128)
    prompts = [
        Prompt("fox", "animals", "a fox", '{"high_level_description":"A red fox in snow."}'),
        Prompt("sign", "text", "a sign", '{"high_level_description":"A neon sign that reads OPEN."}', ("OPEN",)),
    ]
    branches = {"transformer": pipe.transformer, "unconditional_transformer": pipe.unconditional_transformer}
    with StatsCollector(branches, measure_error=False) as collector:
        for index, prompt in enumerate(prompts):
            if index:
                collector.new_run()
            generate(pipe, [prompt], settings, resolution=(64, 64))
    stats = collector.result()
    assert stats.runs == 2
    for branch, model in branches.items():
        assert sorted(stats.branches[branch]) == linear_names(model)
        for name, layer in stats.branches[branch].items():
            assert layer.steps == 3 and (layer.tokens > 0).all(), f"{branch}.{name}"
    assert stats.act_absmax("unconditional_transformer", "llm_cond_proj").max() == 0
