"""Score tables pair per-prompt values and merge CI shards without losing or inventing values."""

import pytest

from quantkit.errors import StoreError
from quantkit.scores import ScoreTable


def _table(prompts: dict[str, float], variant: str = "int8_w8a8") -> ScoreTable:
    table = ScoreTable()
    table.add(variant, "psnr", prompts, direction="higher")
    table.categories.update({pid: "posters" for pid in prompts})
    return table


def test_shards_merge_into_the_union_of_their_prompts():
    merged = _table({"p1": 30.0, "p2": 31.0}).merge(_table({"p3": 29.5}))
    assert merged.scores("int8_w8a8", "psnr") == {"p1": 30.0, "p2": 31.0, "p3": 29.5}
    assert set(merged.categories) == {"p1", "p2", "p3"}


def test_conflicting_values_for_one_prompt_refuse_to_merge():
    with pytest.raises(StoreError, match="p1"):
        _table({"p1": 30.0}).merge(_table({"p1": 12.0}))


def test_a_metric_cannot_change_direction():
    table = _table({"p1": 1.0})
    with pytest.raises(StoreError, match="higher-is-better"):
        table.add("nf4", "psnr", {"p1": 1.0}, direction="lower")


def test_save_and_load_round_trip(tmp_path):
    table = _table({"p1": 30.0, "p2": float("inf")})
    table.not_measured["hpsv2"] = "no HPSv2 checkpoint: set QUANTKIT_HPSV2_CKPT"
    table.save(tmp_path / "s.json")
    assert ScoreTable.load(tmp_path / "s.json") == table
    assert ScoreTable.merge_files([tmp_path / "s.json"]) == table


def test_a_corrupted_file_is_a_clear_error(tmp_path):
    (tmp_path / "s.json").write_text('{"format": 1, "values": ')
    with pytest.raises(StoreError, match="cannot read score table"):
        ScoreTable.load(tmp_path / "s.json")
