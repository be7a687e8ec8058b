"""Calibration wired into ``quantize_``: SmoothQuant plus fragility-ranked bf16 protection beats naive INT8."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from calibration_helpers import denoise, planted_pair

from quantkit.calibrate.stats import StatsCollector
from quantkit.errors import RecipeError
from quantkit.nn import W8A8Linear
from quantkit.quantize import quantize_
from quantkit.recipes import Int8W8A8

DOWN_PROJECTIONS = {f"{branch}.layers.{i}.feed_forward.w2" for branch in ("transformer", "unconditional_transformer")
                    for i in (0, 1)}  # fmt: skip


@pytest.fixture(scope="module")
def planted():
    pair = planted_pair()
    with StatsCollector(pair) as collector:
        denoise(pair["transformer"], pair["unconditional_transformer"], steps=3, seed=0)
    reference = denoise(pair["transformer"], pair["unconditional_transformer"], steps=3, seed=11)
    return pair, collector.result(), reference


def quantized_error(pair, reference, recipe, calibration=None):
    """Relative error of the final image tokens after a held-out denoising run (another seed than calibration)."""
    pipe = types.SimpleNamespace(**copy.deepcopy(pair))
    report = quantize_(pipe, recipe, calibration)
    result = denoise(pipe.transformer, pipe.unconditional_transformer, steps=3, seed=11)
    return float((result - reference).norm() / reference.norm()), report, pipe


def test_smoothquant_and_protection_beat_naive_int8_on_planted_outliers(planted):
    pair, stats, reference = planted
    naive, _, _ = quantized_error(pair, reference, Int8W8A8())
    smoothed, _, _ = quantized_error(pair, reference, Int8W8A8(alpha=0.5), stats)
    protected, _, _ = quantized_error(pair, reference, Int8W8A8(alpha=0.5, protect="auto"), stats)
    print(f"\nplanted-outlier model, relative output error: naive {naive:.4f}, SmoothQuant {smoothed:.4f}, "
          f"SmoothQuant + auto protection {protected:.4f}")  # fmt: skip
    # Either lever removes the planted damage; what remains is the other layers' int8 error.
    assert protected < naive / 2 and smoothed < naive / 2


def test_auto_protection_keeps_exactly_the_down_projections_per_branch(planted):
    pair, stats, reference = planted
    _, report, _ = quantized_error(pair, reference, Int8W8A8(protect="auto"), stats)
    protected = {row.layer for row in report.kept if row.reason.startswith("protected")}
    assert protected == DOWN_PROJECTIONS


def test_protect_k_keeps_the_k_most_fragile_per_branch(planted):
    pair, stats, reference = planted
    _, report, _ = quantized_error(pair, reference, Int8W8A8(protect=1), stats)
    protected = {row.layer for row in report.kept if row.reason.startswith("protected")}
    assert len(protected) == 2 and protected <= DOWN_PROJECTIONS
    assert {name.split(".")[0] for name in protected} == {"transformer", "unconditional_transformer"}


def test_foldable_smoothing_moves_into_norms_and_the_rest_stays_at_run_time(planted):
    pair, stats, reference = planted
    _, _, pipe = quantized_error(pair, reference, Int8W8A8(alpha=0.5), stats)
    block = pipe.transformer.layers[0]
    assert all(isinstance(m, W8A8Linear) and m.smooth is None for m in (block.attention.to_q, block.feed_forward.w1))
    assert block.feed_forward.w2.smooth is None  # folded into w3's per-row scales
    assert block.attention.to_out[0].smooth is not None  # no foldable producer
    original = pair["transformer"].layers[0].attention_norm1.weight
    assert not torch.equal(block.attention_norm1.weight, original)


def test_folding_matches_run_time_smoothing(planted, monkeypatch):
    pair, stats, reference = planted
    folded, _, _ = quantized_error(pair, reference, Int8W8A8(alpha=0.5, kernel="exact_cpu"), stats)
    monkeypatch.setattr("quantkit.calibrate.smoothquant.fold_runtime_smoothing_", lambda model: [])
    runtime, _, _ = quantized_error(pair, reference, Int8W8A8(alpha=0.5, kernel="exact_cpu"), stats)
    assert folded == pytest.approx(runtime, rel=0.05)


def test_protect_k_without_calibration_is_refused(planted):
    pair, _, reference = planted
    with pytest.raises(RecipeError, match="calibration"):
        quantized_error(pair, reference, Int8W8A8(protect="auto"))
