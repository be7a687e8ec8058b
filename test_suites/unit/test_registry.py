"""A variant is declared once, in the registry: a toy variant declared in this file only, with its own codec (this
module: ``FORMAT``, ``quantize``, ``dequantize``), layer and recipe, runs through ``quantize_``, save/load and a
study exactly as the built-in ones do."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantkit import codecs, generation, quantize_
from quantkit.codecs.base import Packed, quantize_per_row
from quantkit.errors import RecipeError
from quantkit.nn import QuantizedLinear, layer_class
from quantkit.recipes import (
    NF4,
    Recipe,
    VariantSpec,
    default_variants,
    known_variants,
    register_variant,
    unregister_variant,
    variant_spec,
)
from quantkit.study import DEFAULT_VARIANTS, Study, StudyConfig, recipe_for
from quantkit.variants import load_variant, save_variant

FORMAT = "toy_int4"
QMAX = 7


def quantize(w: torch.Tensor, *, name: str = "tensor") -> Packed:
    """Symmetric per-row int4 codes in [-7, 7], kept one per int8 (the toy format)."""
    return quantize_per_row(w, FORMAT, name, qmax=QMAX, codes=torch.int8, to_codes=torch.round)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (p.data.to(torch.float32) * p.scale[:, None]).to(dtype).reshape(p.shape)


class ToyInt4Linear(QuantizedLinear):
    FORMATS = (FORMAT,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(x.dtype), self._bias_for(x))


@dataclasses.dataclass(frozen=True)
class ToyInt4(Recipe):
    """Weight-only int4 of every linear with at least ``min_in_features`` inputs."""

    min_in_features: int = 8

    @property
    def name(self) -> str:
        return "toy_int4"

    @property
    def format(self) -> str:
        return FORMAT

    def keep_reason(self, linear: nn.Linear) -> str | None:
        too_small = linear.in_features < self.min_in_features
        return f"in_features {linear.in_features} < {self.min_in_features}" if too_small else None

    def build(self, linear: nn.Linear, *, name: str, smooth: torch.Tensor | None) -> ToyInt4Linear:
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return ToyInt4Linear(codecs.quantize(linear.weight.detach(), FORMAT, name=name), bias)


SPEC = VariantSpec(
    name="toy_int4",
    recipe=ToyInt4,
    sources=(str(Path(__file__).resolve()),),
    codec=sys.modules[__name__],
    layer=ToyInt4Linear,
)


@pytest.fixture(scope="module")
def toy():
    register_variant(SPEC)
    generation.quantizer_version.cache_clear()
    yield SPEC
    unregister_variant(SPEC.name)
    generation.quantizer_version.cache_clear()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))


def test_a_registered_variant_is_known_but_runs_by_default_only_when_declared_so(toy):
    assert "toy_int4" in known_variants() and "toy_int4" not in default_variants()
    assert DEFAULT_VARIANTS == ("fp8", "int8_w8a8", "q4_k", "q8_0", "nf4")
    assert variant_spec("toy_int4") is toy and recipe_for("toy_int4") == ToyInt4()
    assert codecs.codec(FORMAT) is sys.modules[__name__] and layer_class(FORMAT) is ToyInt4Linear


def test_quantize_builds_the_toy_layer_from_the_recipes_hooks(toy):
    model, x = _model(), torch.randn(3, 16)
    expected = model(x)
    report = quantize_(model, recipe_for("toy_int4"))
    assert [type(m) for m in model if not isinstance(m, nn.GELU)] == [ToyInt4Linear, ToyInt4Linear]
    assert [r.fmt for r in report.quantized] == [FORMAT, FORMAT]
    assert torch.allclose(model(x), expected, atol=0.3) and not torch.equal(model(x), expected)


def test_save_and_load_give_the_same_toy_layers_and_outputs(toy, tmp_path):
    model, x = _model(), torch.randn(3, 16)
    quantize_(model, ToyInt4())
    checkpoint = save_variant(model, ToyInt4(), tmp_path)
    assert checkpoint.name == "ideogram4-toy_int4.safetensors"
    fresh = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    assert load_variant(fresh, tmp_path) == ToyInt4()
    assert isinstance(fresh[0], ToyInt4Linear) and torch.equal(fresh(x), model(x))


def test_a_study_runs_the_toy_variant_and_keys_its_images_on_its_own_code(toy, tmp_path):
    config = StudyConfig(
        model="tiny-random",
        preset="SMOKE",
        variants=("fp8", "toy_int4"),
        metrics=("psnr",),
        prompt_limit=2,
        cache_dir=str(tmp_path),
    )
    study = Study(config, progress=False)
    scores = study.scores("toy_int4")
    assert set(scores["psnr"]) == {p.id for p in study.prompts} and len(study.prompts) == 2
    assert {key.quantizer_version for key in study.image_keys("toy_int4").values()} == {
        generation.quantizer_version("toy_int4")
    }
    assert generation.quantizer_version("toy_int4") != generation.quantizer_version("fp8")


def test_a_variant_name_is_registered_once():
    with pytest.raises(RecipeError, match="already registered"):
        register_variant(dataclasses.replace(variant_spec("nf4"), default=False))
    with pytest.raises(RecipeError, match="unknown variant 'int4'"):
        variant_spec("int4")


def test_every_registered_variant_is_named_after_its_recipe():
    for name in known_variants():
        assert recipe_for(name).name == name


@pytest.mark.parametrize("blocksize", [32, 64, 4096])
def test_nf4_recipe_accepts_the_block_sizes_of_the_codec_and_bitsandbytes(blocksize):
    """bitsandbytes 0.50.2 (functional.quantize_4bit) takes 32, 64, ..., 4096; the recipe and codec agree."""
    from quantkit.codecs import nf4

    assert NF4(blocksize=blocksize).blocksize == blocksize
    assert nf4.BLOCKSIZES == (32, 64, 128, 256, 512, 1024, 2048, 4096)


def test_nf4_recipe_with_block_32_quantizes_like_bitsandbytes():
    bnb = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 8))
    weight = model[0].weight.detach().clone()
    quantize_(model, NF4(blocksize=32, keep=()))
    packed, state = bnb.quantize_4bit(weight, blocksize=32, quant_type="nf4")
    assert torch.equal(model[0].packed().data.reshape(-1), packed.reshape(-1))
    assert torch.equal(model[0].packed().scale, state.absmax)


def test_nf4_recipe_refuses_other_block_sizes():
    with pytest.raises(RecipeError, match="blocksize"):
        NF4(blocksize=16)
