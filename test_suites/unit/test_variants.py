"""Every variant saves to its file layout and reloads into a fresh model or pipeline with identical weights."""

import json

import numpy as np
import pytest
import torch

from quantkit import GGUF, NF4, FP8Reference, Int8W8A8, quantize_
from quantkit.errors import CheckpointError, RecipeError
from quantkit.io.gguf import read_gguf
from quantkit.io.safetensors import load_packed
from quantkit.nn import QuantizedLinear, W8A8Linear
from quantkit.pipelines.ideogram4 import SamplerSettings, generate, load_pipeline
from quantkit.pipelines.tiny import tiny_transformer
from quantkit.prompts.prompt import Prompt
from quantkit.recipes import load_recipe
from quantkit.variants import checkpoint_path, load_variant, save_variant

RECIPES = {
    "fp8": FP8Reference(),
    "int8_w8a8": Int8W8A8(protect=["*.feed_forward.w2"], kernel="fake_quant"),
    "q4_k": GGUF("q4_k"),
    "q8_0": GGUF("q8_0"),
    "nf4": NF4(double_quant=True),
}
TWO_STEPS = SamplerSettings("TWO_STEPS", 2, (7.0, 3.0), mu=0.5, std=1.75, max_sequence_length=128)
FOX = Prompt("fox", "animals", "a fox", '{"high_level_description":"A red fox in snow."}')


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key
    layers = {n: type(m) for n, m in a.named_modules() if isinstance(m, QuantizedLinear)}
    assert layers == {n: type(m) for n, m in b.named_modules() if isinstance(m, QuantizedLinear)}


@pytest.mark.parametrize("variant_id", RECIPES)
def test_model_round_trip_gives_identical_weights_and_outputs(tmp_path, variant_id):
    recipe = RECIPES[variant_id]
    model = tiny_transformer(seed=0)
    quantize_(model, recipe)
    checkpoint = save_variant(model, recipe, tmp_path)
    fresh = tiny_transformer(seed=7)  # different weights: everything must come from the file
    assert load_variant(fresh, tmp_path) == recipe
    assert_same_state(model, fresh)
    x = torch.randn(2, 5, 256)
    with torch.no_grad():
        assert torch.equal(model.layers[0].feed_forward(x), fresh.layers[0].feed_forward(x))
    assert checkpoint.name == f"ideogram4-{recipe.name}.{'gguf' if isinstance(recipe, GGUF) else 'safetensors'}"


@pytest.mark.parametrize("variant_id", ["int8_w8a8", "fp8", "nf4"])
def test_safetensors_variants_carry_recipe_json_and_the_recipe_in_the_header(tmp_path, variant_id):
    recipe = RECIPES[variant_id]
    model = tiny_transformer()
    quantize_(model, recipe)
    save_variant(model, recipe, tmp_path)
    assert load_recipe(tmp_path / "recipe.json") == recipe
    _, metadata = load_packed(checkpoint_path(tmp_path, recipe))
    assert json.loads(metadata["quantkit.recipe"]) == recipe.to_dict()


def test_gguf_variant_keeps_the_recipe_in_its_metadata_and_non_linear_tensors_in_float(tmp_path):
    recipe = RECIPES["q4_k"]
    model = tiny_transformer()
    quantize_(model, recipe)
    save_variant(model, recipe, tmp_path)
    tensors, metadata = read_gguf(tmp_path / "ideogram4-q4_k.gguf")
    assert json.loads(metadata["quantkit.recipe"]) == recipe.to_dict()
    assert tensors["layers.0.feed_forward.w2.weight"].fmt == "q4_k"
    assert tensors["layers.0.attention_norm1.weight"].dtype == torch.float32
    assert tensors["llm_cond_proj.weight"].dtype == torch.float32  # row 416 is no multiple of 256: kept


def test_int8_reload_restores_the_recipe_kernel_and_smoothing_vectors(tmp_path):
    recipe = Int8W8A8(kernel="exact_cpu")
    model = tiny_transformer()
    quantize_(model, recipe)
    model.layers[0].attention.to_q.register_buffer("smooth", torch.rand(256) + 0.5)
    save_variant(model, recipe, tmp_path)
    fresh = tiny_transformer(seed=3)
    load_variant(fresh, tmp_path)
    assert torch.equal(fresh.layers[0].attention.to_q.smooth, model.layers[0].attention.to_q.smooth)
    assert fresh.layers[0].attention.to_k.smooth is None
    assert {m.kernel for m in fresh.modules() if isinstance(m, W8A8Linear)} == {"exact_cpu"}


@pytest.mark.parametrize("variant_id", ["int8_w8a8", "q4_k"])
def test_pipeline_round_trip_gives_identical_images(tmp_path, variant_id):
    recipe = RECIPES[variant_id]
    pipe = load_pipeline("tiny-random")
    quantize_(pipe, recipe)
    save_variant(pipe, recipe, tmp_path)
    fresh = load_pipeline("tiny-random")
    with torch.no_grad():
        for name in ("transformer", "unconditional_transformer"):
            for p in getattr(fresh, name).parameters():
                torch.nn.init.normal_(p)  # the file must supply every weight
    load_variant(fresh, tmp_path)
    assert_same_state(pipe.transformer, fresh.transformer)
    assert_same_state(pipe.unconditional_transformer, fresh.unconditional_transformer)
    images = [np.asarray(generate(p, [FOX], TWO_STEPS, resolution=(64, 64))[0].image) for p in (pipe, fresh)]
    assert np.array_equal(*images)


def test_saving_an_unquantized_model_or_with_another_recipe_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="no quantized layer"):
        save_variant(tiny_transformer(), FP8Reference(), tmp_path)
    model = tiny_transformer()
    quantize_(model, FP8Reference())
    with pytest.raises(RecipeError, match="makes int8"):
        save_variant(model, Int8W8A8(), tmp_path)


def test_a_model_variant_does_not_load_into_a_pipeline(tmp_path):
    model = tiny_transformer()
    quantize_(model, FP8Reference())
    save_variant(model, FP8Reference(), tmp_path)
    with pytest.raises(CheckpointError, match="saved from a model but loading into a pipeline"):
        load_variant(load_pipeline("tiny-random"), tmp_path)


def test_mismatched_recipe_json_or_truncated_checkpoint_are_clear_errors(tmp_path):
    model = tiny_transformer()
    quantize_(model, NF4())
    checkpoint = save_variant(model, NF4(), tmp_path)
    NF4(blocksize=128).save(tmp_path / "recipe.json")
    with pytest.raises(CheckpointError, match=r"differs from recipe\.json"):
        load_variant(tiny_transformer(), tmp_path)
    NF4().save(tmp_path / "recipe.json")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    fresh = tiny_transformer(seed=4)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError):
        load_variant(fresh, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_a_checkpoint_for_another_config_is_refused_naming_the_tensor(tmp_path):
    model = tiny_transformer()
    quantize_(model, GGUF("q8_0"))
    save_variant(model, GGUF("q8_0"), tmp_path)
    other = tiny_transformer()
    other.layers[0].feed_forward.w2 = torch.nn.Linear(256, 256, bias=False)
    with pytest.raises(CheckpointError, match=r"layers\.0\.feed_forward\.w2\.weight: checkpoint shape"):
        load_variant(other, tmp_path)


def test_a_bad_second_branch_leaves_both_branches_of_the_pipeline_untouched(tmp_path):
    pipe = load_pipeline("tiny-random")
    quantize_(pipe, FP8Reference())
    save_variant(pipe, FP8Reference(), tmp_path)
    fresh = load_pipeline("tiny-random")
    fresh.unconditional_transformer.final_layer.linear = torch.nn.Linear(256, 8)
    before = {k: v.clone() for k, v in fresh.transformer.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"final_layer\.linear\.weight: checkpoint shape"):
        load_variant(fresh, tmp_path)
    assert fresh.transformer.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in fresh.transformer.state_dict().items())
