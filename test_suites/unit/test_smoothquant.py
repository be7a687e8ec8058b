"""SmoothQuant is an exact identity before rounding, folds where Ideogram 4's graph allows, and floors its factors."""

from __future__ import annotations

import copy

import pytest
import torch
from calibration_helpers import denoise, tiny_pair

from quantkit.calibrate.smoothquant import RuntimeSmoothing, act_scales, smooth_, smoothing_factors, smoothing_groups
from quantkit.calibrate.stats import StatsCollector
from quantkit.errors import QuantkitError


@pytest.fixture(scope="module")
def calibrated_pair_f64():
    pair = tiny_pair(torch.float64)
    with StatsCollector(pair, measure_error=False) as collector:
        denoise(pair["transformer"], pair["unconditional_transformer"], steps=2)
    return pair, collector.result()


def test_smoothing_factor_formula_matches_the_paper():
    act = torch.tensor([4.0, 9.0, 1.0])
    weight = torch.tensor([1.0, 4.0, 0.25])
    s = smoothing_factors(act, weight, alpha=0.5)
    torch.testing.assert_close(s, torch.tensor([2.0, 1.5, 2.0]))
    torch.testing.assert_close(smoothing_factors(act, weight, alpha=1.0), act)


def test_smoothing_factors_are_floored_and_dead_channels_stay_unsmoothed():
    s = smoothing_factors(torch.tensor([1e-30, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.0]), alpha=0.5, floor=1e-5)
    assert s[0] == pytest.approx(1e-5**0.5 / 1.0)  # activation floored before the power
    assert s[1] == 1.0  # never active during calibration: no evidence, no smoothing
    assert torch.isfinite(s).all() and (s >= 1e-5).all()


def test_alpha_outside_unit_interval_is_rejected():
    with pytest.raises(QuantkitError, match="alpha"):
        smoothing_factors(torch.ones(3), torch.ones(3), alpha=1.5)


def test_ideogram_block_inputs_fold_into_norms_and_the_down_projection_into_w3():
    pair = tiny_pair()
    groups = {group.layers: (group.fold_into, group.kind) for group in smoothing_groups(pair["transformer"])}
    qkv = tuple(f"layers.0.attention.to_{p}" for p in "qkv")
    assert groups[qkv] == ("layers.0.attention_norm1", "norm")
    assert groups[("layers.1.feed_forward.w1", "layers.1.feed_forward.w3")] == ("layers.1.ffn_norm1", "norm")
    assert groups[("layers.0.feed_forward.w2",)] == ("layers.0.feed_forward.w3", "rows")
    assert groups[("llm_cond_proj",)] == ("llm_cond_norm", "norm")
    assert groups[("layers.0.attention.to_out.0",)] == (None, "runtime")
    assert groups[("final_layer.linear",)] == (None, "runtime")
    covered = sorted(name for layers in groups for name in layers)
    linears = sorted(n for n, m in pair["transformer"].named_modules() if isinstance(m, torch.nn.Linear))
    assert covered == linears


@pytest.mark.parametrize("alpha", [0.5, 0.85])
def test_smoothing_is_an_exact_identity_in_float64(calibrated_pair_f64, alpha):
    pair, stats = calibrated_pair_f64
    reference = denoise(pair["transformer"], pair["unconditional_transformer"], steps=2, seed=7)
    smoothed = {branch: copy.deepcopy(model) for branch, model in pair.items()}
    vectors = {branch: smooth_(m, act_scales(stats.branches[branch]), alpha) for branch, m in smoothed.items()}
    assert vectors["transformer"], "some layers need run-time smoothing"
    cond, uncond = smoothed["transformer"], smoothed["unconditional_transformer"]
    with RuntimeSmoothing(cond, vectors["transformer"]), RuntimeSmoothing(uncond, vectors["unconditional_transformer"]):
        result = denoise(cond, uncond, steps=2, seed=7)
    changed = smoothed["transformer"].layers[0].attention.to_q.weight
    assert not torch.equal(changed, pair["transformer"].layers[0].attention.to_q.weight)
    torch.testing.assert_close(result, reference, rtol=1e-11, atol=1e-12)


def test_smoothing_without_run_time_division_changes_the_function(calibrated_pair_f64):
    pair, stats = calibrated_pair_f64
    model = copy.deepcopy(pair["transformer"])
    vectors = smooth_(model, act_scales(stats.branches["transformer"]))
    reference = denoise(pair["transformer"], pair["unconditional_transformer"], steps=1)
    broken = denoise(model, pair["unconditional_transformer"], steps=1)
    assert vectors and not torch.allclose(broken, reference, rtol=1e-6, atol=1e-9)


def test_excluded_run_time_layers_are_left_untouched(calibrated_pair_f64):
    pair, stats = calibrated_pair_f64
    model = copy.deepcopy(pair["transformer"])
    vectors = smooth_(model, act_scales(stats.branches["transformer"]), exclude={"layers.0.attention.to_out.0"})
    assert "layers.0.attention.to_out.0" not in vectors
    original = pair["transformer"].layers[0].attention.to_out[0].weight
    assert torch.equal(model.layers[0].attention.to_out[0].weight, original)


def test_missing_statistics_name_the_layer():
    model = tiny_pair()["transformer"]
    with pytest.raises(QuantkitError, match="input_proj"):
        smooth_(model, {})
