"""Recipes are small frozen configs: stable names and hashes, JSON round trips, and clear errors on bad fields."""

import dataclasses
import hashlib
import json

import pytest

from quantkit import GGUF, NF4, FP8Reference, Int8W8A8, Recipe
from quantkit.errors import RecipeError
from quantkit.recipes import QUANTIZER_VERSION, load_recipe

RECIPES = [
    FP8Reference(),
    Int8W8A8(),
    Int8W8A8(alpha=0.8, protect=["*.feed_forward.w2"], kernel="fake_quant", keep=["final_layer.linear"]),
    Int8W8A8(protect=17),
    Int8W8A8(protect="auto"),
    GGUF(qtype="q4_k"),
    GGUF(qtype="q8_0", keep=["input_proj"], min_numel=0),
    NF4(),
    NF4(blocksize=128, double_quant=True),
]


@pytest.mark.parametrize(
    ("recipe", "name"),
    [
        (FP8Reference(), "fp8"),
        (Int8W8A8(), "int8_w8a8"),
        (GGUF("q4_k"), "q4_k"),
        (GGUF("q8_0"), "q8_0"),
        (NF4(), "nf4"),
    ],
)
def test_recipe_names_are_the_variant_ids(recipe, name):
    assert recipe.name == name


@pytest.mark.parametrize("recipe", RECIPES, ids=repr)
def test_json_round_trip_gives_an_equal_recipe_with_the_same_hash(recipe):
    again = Recipe.from_json(recipe.to_json())
    assert again == recipe
    assert type(again) is type(recipe)
    assert again.hash == recipe.hash


@pytest.mark.parametrize("recipe", RECIPES, ids=repr)
def test_recipe_json_file_round_trip(tmp_path, recipe):
    recipe.save(tmp_path / "recipe.json")
    assert load_recipe(tmp_path / "recipe.json") == recipe


def test_hash_is_the_sha256_of_canonical_json_and_quantizer_version():
    assert FP8Reference().to_json() == '{"keep":[],"recipe":"FP8Reference"}'
    assert QUANTIZER_VERSION == "1"
    expected = hashlib.sha256(b'{"keep":[],"recipe":"FP8Reference"}\nquantizer=1').hexdigest()
    assert FP8Reference().hash == expected == "bcd215e03d51c7ffbfd4701ca4bd4b1cf5f004906eaf5d9630e292a53caae4e2"


def test_hash_ignores_key_order_and_list_vs_tuple_but_not_values():
    shuffled = json.dumps({"protect": ["a", "b"], "recipe": "Int8W8A8", "alpha": 0.5}, indent=4)
    assert Recipe.from_json(shuffled).hash == Int8W8A8(protect=("a", "b")).hash
    assert Int8W8A8(alpha=0.5).hash != Int8W8A8(alpha=0.6).hash
    assert len({r.hash for r in RECIPES}) == len(RECIPES)


def test_recipes_are_frozen_and_hashable():
    recipe = Int8W8A8(protect=["x"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.alpha = 0.9
    assert {recipe: 1}[Int8W8A8(protect=("x",))] == 1


def test_unknown_field_is_named_in_the_error():
    with pytest.raises(RecipeError, match=r"Int8W8A8: unknown field\(s\) \['alhpa'\]"):
        Recipe.from_json('{"recipe": "Int8W8A8", "alhpa": 0.5}')


def test_unknown_recipe_class_and_malformed_json_are_clear_errors():
    with pytest.raises(RecipeError, match="unknown recipe 'Int4'"):
        Recipe.from_json('{"recipe": "Int4"}')
    with pytest.raises(RecipeError, match="malformed"):
        Recipe.from_json('{"recipe": ')
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("/nonexistent/recipe.json")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Int8W8A8(alpha="0.5"), "alpha"),
        (lambda: Int8W8A8(alpha=1.5), "alpha"),
        (lambda: Int8W8A8(alpha=True), "alpha"),
        (lambda: Int8W8A8(protect=3.5), "protect"),
        (lambda: Int8W8A8(protect="w2"), "protect"),
        (lambda: Int8W8A8(protect=-1), "protect"),
        (lambda: Int8W8A8(kernel="cuda"), "kernel"),
        (lambda: Int8W8A8(activation="per_tensor_static"), "activation"),
        (lambda: GGUF(qtype="q4_0"), "qtype"),
        (lambda: GGUF(min_numel=-1), "min_numel"),
        (lambda: NF4(blocksize=100), "blocksize"),
        (lambda: NF4(blocksize=64.0), "blocksize"),
        (lambda: NF4(double_quant="yes"), "double_quant"),
        (lambda: FP8Reference(keep="input_proj"), "keep"),
        (lambda: FP8Reference(keep=[""]), "keep"),
    ],
)
def test_wrong_type_or_value_names_the_field(make, field):
    with pytest.raises(RecipeError, match=rf"\.{field}: expected"):
        make()


def test_skip_rules_are_listed_in_words():
    assert any("feed_forward.w2" in rule for rule in Int8W8A8(protect=["*.feed_forward.w2"]).skip_rules())
    assert any("multiple of 256" in rule for rule in GGUF("q4_k").skip_rules())
    assert any("multiple of 32" in rule for rule in GGUF("q8_0").skip_rules())
