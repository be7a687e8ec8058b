"""Fragility ranking: deterministic, planted outliers rank first, and protection picks exactly the fragile layers."""

from __future__ import annotations

import json

import pytest
from calibration_helpers import denoise, plant_down_projection_outliers, planted_pair, tiny_pair

from quantkit.calibrate.fragility import rank_fragility, select_protected, write_report
from quantkit.calibrate.stats import StatsCollector
from quantkit.errors import RecipeError

DOWN_PROJECTIONS = ["layers.0.feed_forward.w2", "layers.1.feed_forward.w2"]


def calibrate(pair, steps=3):
    with StatsCollector(pair) as collector:
        denoise(pair["transformer"], pair["unconditional_transformer"], steps=steps)
    return collector.result()


@pytest.fixture(scope="module")
def planted_ranking():
    return rank_fragility(calibrate(planted_pair()))


def test_ranking_is_deterministic():
    first = rank_fragility(calibrate(tiny_pair()))
    second = rank_fragility(calibrate(tiny_pair()))
    assert first == second


def test_a_layer_with_planted_activation_outliers_ranks_first():
    pair = tiny_pair()
    plant_down_projection_outliers(pair["unconditional_transformer"], blocks=(1,))
    ranking = rank_fragility(calibrate(pair))
    top = ranking["unconditional_transformer"][0]
    assert top.name == "layers.1.feed_forward.w2"
    assert top.outlier_ratio > 50
    assert ranking["transformer"][0].outlier_ratio < 50  # the other branch was left alone


def test_auto_protects_exactly_the_planted_down_projections_in_each_branch(planted_ranking):
    for branch, ranking in planted_ranking.items():
        assert sorted(select_protected(ranking, "auto")) == DOWN_PROJECTIONS, branch


def test_auto_protects_nothing_without_a_clear_gap():
    ranking = rank_fragility(calibrate(tiny_pair(), steps=2))
    assert select_protected(ranking["transformer"], "auto") == []


def test_protect_k_takes_the_k_most_fragile(planted_ranking):
    ranking = planted_ranking["transformer"]
    assert select_protected(ranking, 3) == [entry.name for entry in ranking[:3]]
    assert select_protected(ranking, 0) == []


def test_protect_names_are_checked_against_the_calibrated_layers(planted_ranking):
    ranking = planted_ranking["transformer"]
    assert select_protected(ranking, ["final_layer.linear"]) == ["final_layer.linear"]
    with pytest.raises(RecipeError, match=r"layers\.9\.feed_forward\.w2"):
        select_protected(ranking, ["layers.9.feed_forward.w2"])
    with pytest.raises(RecipeError, match="protect=999 but"):
        select_protected(ranking, 999)
    with pytest.raises(RecipeError, match="'most'"):
        select_protected(ranking, "most")


def test_the_report_lists_every_layer_and_marks_the_protected(planted_ranking, tmp_path):
    protected = {branch: select_protected(r, "auto") for branch, r in planted_ranking.items()}
    write_report(tmp_path / "fragility.md", planted_ranking, protected)
    markdown = (tmp_path / "fragility.md").read_text()
    data = json.loads((tmp_path / "fragility.json").read_text())
    for branch, ranking in planted_ranking.items():
        assert f"## {branch}" in markdown
        assert [e["name"] for e in data["ranking"][branch]] == [e.name for e in ranking]
        assert sorted(data["protected"][branch]) == DOWN_PROJECTIONS
    assert "| 1 | `layers." in markdown and "feed_forward.w2` |" in markdown and "| yes |" in markdown
