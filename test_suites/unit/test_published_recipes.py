"""The published configurations of the study are pinned: any drift of a variant's recipe fails here, and the
golden is updated only on purpose (``quantkit golden recipes --update``)."""

import dataclasses
import json

import pytest

from quantkit import published
from quantkit.recipes import GGUF, NF4, Int8W8A8, registry, variant_spec


def _publish(monkeypatch, name, recipe):
    """Make the registry build ``recipe()`` for variant ``name`` for this test only."""
    monkeypatch.setitem(registry._VARIANTS, name, dataclasses.replace(variant_spec(name), recipe=recipe))


def test_the_published_recipes_match_the_golden():
    changes = published.drift()
    assert not changes, f"{published.DRIFT} (`{published.UPDATE}`):\n" + "\n".join(changes)


def test_the_golden_records_what_the_study_publishes():
    golden = json.loads(published.GOLDEN.read_text())
    assert golden["int8_w8a8"]["recipe"]["alpha"] == 0.5 and golden["int8_w8a8"]["recipe"]["protect"] == "auto"
    assert golden["int8_w8a8"]["protection_rule"]["auto_min_gap"] == 2.0
    assert (golden["nf4"]["recipe"]["blocksize"], golden["nf4"]["recipe"]["double_quant"]) == (64, False)
    assert {golden[q]["recipe"]["qtype"] for q in ("q4_k", "q8_0")} == {"q4_k", "q8_0"}
    assert golden["fp8"]["recipe"]["recipe"] == "FP8Reference"


@pytest.mark.parametrize(
    ("name", "recipe", "field"),
    [
        ("int8_w8a8", lambda: Int8W8A8(alpha=1.0, protect="auto"), "int8_w8a8.recipe.alpha"),
        ("int8_w8a8", lambda: Int8W8A8(alpha=0.5, protect=17), "int8_w8a8.recipe.protect"),
        ("nf4", lambda: NF4(blocksize=128), "nf4.recipe.blocksize"),
        ("nf4", lambda: NF4(double_quant=True), "nf4.recipe.double_quant"),
        ("q4_k", lambda: GGUF(qtype="q4_k", min_numel=0), "q4_k.recipe.min_numel"),
    ],
)
def test_any_drift_of_a_published_recipe_is_caught(monkeypatch, name, recipe, field):
    _publish(monkeypatch, name, recipe)
    assert any(line.startswith(f"{field}:") for line in published.drift())


def test_a_change_of_the_protection_rule_is_caught(monkeypatch):
    from quantkit.calibrate import fragility

    monkeypatch.setattr(fragility, "AUTO_MIN_GAP", 1.5)
    assert [line.split(":")[0] for line in published.drift()] == ["int8_w8a8.protection_rule.auto_min_gap"]


def test_an_update_on_purpose_rewrites_the_golden(tmp_path, monkeypatch):
    golden = tmp_path / "recipes.json"
    golden.write_text(published.GOLDEN.read_text())
    _publish(monkeypatch, "int8_w8a8", lambda: Int8W8A8(alpha=0.6, protect="auto"))
    assert published.update(golden)[0].startswith("int8_w8a8.hash:")
    assert published.drift(golden) == []
