"""quantize_ swaps exactly the linears a recipe does not skip, reports every decision, and fails without harm."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from quantkit import GGUF, NF4, FP8Reference, Int8W8A8, quantize_
from quantkit.errors import FormatError, QuantkitError, RecipeError
from quantkit.nn import FP8Linear, QuantizedLinear, W8A8Linear
from quantkit.pipelines.ideogram4 import SamplerSettings, generate, load_pipeline
from quantkit.pipelines.tiny import TINY_TRANSFORMER_CONFIG, tiny_transformer
from quantkit.prompts.prompt import Prompt

TEXT_TOKENS, IMAGE_TOKENS = 5, 12


def transformer_inputs(seed: int = 1, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """One packed sample: text tokens then image tokens, as Ideogram4Pipeline builds it."""
    gen = torch.Generator().manual_seed(seed)
    n = TEXT_TOKENS + IMAGE_TOKENS
    positions = torch.arange(n)
    return {
        "hidden_states": torch.randn(1, n, TINY_TRANSFORMER_CONFIG["in_channels"], generator=gen, dtype=dtype),
        "timestep": torch.tensor([0.5], dtype=dtype),
        "encoder_hidden_states": torch.randn(1, n, TINY_TRANSFORMER_CONFIG["llm_features_dim"], generator=gen).to(
            dtype
        ),
        "position_ids": torch.stack([torch.zeros_like(positions), positions // 4, positions % 4], -1)[None],
        "segment_ids": torch.zeros(1, n, dtype=torch.long),
        "indicator": torch.tensor([3] * TEXT_TOKENS + [2] * IMAGE_TOKENS)[None],
    }


@torch.no_grad()
def image_velocity(model: nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return model(**transformer_inputs(dtype=dtype)).sample[:, TEXT_TOKENS:].float()


def linear_names(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def quantized_names(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# Per recipe: the linears of the tiny transformer its skip rules keep, and the bound on the relative L2 error of
# the image-token velocity against the unquantized model (measured on the uniformly initialised tiny weights:
# ~0.025 fp8, ~0.009 int8, ~0.004 q8_0, ~0.06 q4_k, ~0.15 nf4).
CASES = {
    "fp8": (FP8Reference(), set(), 0.05),
    "int8_w8a8": (Int8W8A8(), {"input_proj"}, 0.03),
    "int8_w8a8_protected": (
        Int8W8A8(protect=["*.feed_forward.w2"]),
        {"input_proj", "layers.0.feed_forward.w2", "layers.1.feed_forward.w2"},
        0.03,
    ),
    "q8_0": (GGUF("q8_0"), {"input_proj"}, 0.01),
    "q4_k": (
        GGUF("q4_k"),
        {
            "input_proj",
            "llm_cond_proj",
            "layers.0.adaln_modulation",
            "layers.1.adaln_modulation",
            "final_layer.adaln_modulation",
        },
        0.15,
    ),
    "nf4": (NF4(), set(), 0.25),
    "nf4_double_quant": (NF4(blocksize=128, double_quant=True), set(), 0.25),
}


@pytest.mark.parametrize("case", CASES)
def test_quantized_linears_are_all_linears_minus_the_skipped_ones(case):
    recipe, skipped, _ = CASES[case]
    model = tiny_transformer()
    before = linear_names(model)
    report = quantize_(model, recipe)
    assert quantized_names(model) == before - skipped
    assert linear_names(model) == skipped
    assert {r.layer for r in report.quantized} == before - skipped
    assert {r.layer for r in report.kept if r.layer in before} == skipped


@pytest.mark.parametrize("case", CASES)
def test_outputs_stay_finite_and_close_to_the_unquantized_model(case):
    recipe, _, bound = CASES[case]
    reference = image_velocity(tiny_transformer())
    model = tiny_transformer()
    quantize_(model, recipe)
    out = image_velocity(model)
    assert torch.isfinite(out).all()
    assert rel_l2(out, reference) < bound


def test_report_lists_norms_and_embeddings_as_kept_with_their_reason():
    report = quantize_(tiny_transformer(), FP8Reference())
    reasons = {r.layer: r.reason for r in report.kept}
    assert reasons["llm_cond_norm"] == "norm"
    assert reasons["layers.1.attention.norm_q"] == "norm"
    assert reasons["embed_image_indicator"] == "embedding"
    table = report.format_table()
    assert "layers.0.feed_forward.w2" in table
    assert "fp8: 23 quantized, 14 kept" in table


def test_int8_skips_tiny_input_projections_and_says_why():
    report = quantize_(tiny_transformer(), Int8W8A8())
    (row,) = [r for r in report.rows if r.layer == "input_proj"]
    assert row.action == "kept"
    assert "in_features 16 <= 16" in row.reason


# bf16 bytes over quantized bytes of the quantized linears (weights, scales, bias) of a bf16 tiny transformer.
# Expected from bits per weight: 8 + 32/K (fp8, int8: a float32 scale per row of K weights), 8.5 (q8_0), 4.5 (nf4).
FOOTPRINTS = {
    "fp8": (FP8Reference(), 1.9, 2.0),
    "int8_w8a8": (Int8W8A8(min_in_features=0), 1.9, 2.0),
    "q8_0": (GGUF("q8_0"), 1.8, 1.9),
    "nf4": (NF4(), 3.4, 3.6),
    "q4_k": (GGUF("q4_k"), 3.4, 3.6),
}


@pytest.mark.parametrize("variant_id", FOOTPRINTS)
def test_footprint_of_the_quantized_linears_against_bf16(variant_id):
    recipe, low, high = FOOTPRINTS[variant_id]
    model = tiny_transformer(dtype=torch.bfloat16)
    before = {
        name: sum(p.nbytes for p in m.parameters()) for name, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    report = quantize_(model, recipe)
    after = {name: m.nbytes for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    assert sum(after.values()) == report.quantized_bytes
    assert sum(before[name] for name in after) / sum(after.values()) == pytest.approx(report.footprint_ratio)
    assert low < report.footprint_ratio < high


def test_a_pipeline_gets_both_transformers_quantized_and_nothing_else():
    vae = nn.Linear(8, 8)
    pipe = SimpleNamespace(transformer=tiny_transformer(0), unconditional_transformer=tiny_transformer(1), vae=vae)
    report = quantize_(pipe, FP8Reference())
    assert quantized_names(pipe.transformer) == quantized_names(pipe.unconditional_transformer) != set()
    assert isinstance(pipe.vae, nn.Linear) and pipe.vae is vae
    assert "unconditional_transformer.layers.1.feed_forward.w2" in {r.layer for r in report.quantized}


def test_protect_by_count_or_auto_without_calibration_explains_what_is_needed():
    for protect in (17, "auto"):
        model = tiny_transformer()
        with pytest.raises(RecipeError, match="calibration"):
            quantize_(model, Int8W8A8(protect=protect))
        assert quantized_names(model) == set()


def test_keep_or_protect_names_that_match_nothing_are_errors():
    with pytest.raises(RecipeError, match=r"'layers\.0\.feed_forward\.w9' matches no linear"):
        quantize_(tiny_transformer(), Int8W8A8(protect=["layers.0.feed_forward.w9"]))
    with pytest.raises(RecipeError, match=r"keep: 'final\.linear' matches no linear"):
        quantize_(tiny_transformer(), FP8Reference(keep=["final.linear"]))


def test_keep_patterns_match_full_pipeline_names_too():
    pipe = SimpleNamespace(transformer=tiny_transformer(0), unconditional_transformer=tiny_transformer(1))
    quantize_(pipe, FP8Reference(keep=["unconditional_transformer.final_layer.*"]))
    assert isinstance(pipe.transformer.final_layer.linear, FP8Linear)
    assert isinstance(pipe.unconditional_transformer.final_layer.linear, nn.Linear)


def test_nan_weight_is_a_clear_error_and_leaves_the_model_untouched():
    model = tiny_transformer()
    model.layers[1].feed_forward.w3.weight.data[4, 2] = float("nan")
    with pytest.raises(FormatError, match=r"layers\.1\.feed_forward\.w3: int8 cannot encode NaN"):
        quantize_(model, Int8W8A8())
    assert quantized_names(model) == set()


def test_quantizing_twice_is_refused():
    model = tiny_transformer()
    quantize_(model, FP8Reference())
    with pytest.raises(QuantkitError, match="already quantized"):
        quantize_(model, FP8Reference())


def test_other_targets_are_refused():
    with pytest.raises(QuantkitError, match=r"nn\.Module or a pipeline"):
        quantize_(object(), FP8Reference())


class RecordingCalibration:
    """A stand-in for quantkit.calibrate's statistics: fixed fragility ranking and smoothing vectors."""

    def __init__(self, ranking: list[str], smooth: dict[str, torch.Tensor]) -> None:
        self.ranking, self.smooth, self.asked = ranking, smooth, []

    def protected_layers(self, protect):
        return self.ranking[:protect]

    def smoothing(self, layer, weight, alpha):
        self.asked.append((layer, alpha))
        return self.smooth.get(layer)


def test_calibration_chooses_protected_layers_and_smoothing_vectors():
    smooth = torch.rand(256) + 0.5
    calibration = RecordingCalibration(
        ["layers.1.feed_forward.w2", "layers.0.feed_forward.w2"], {"layers.0.attention.to_q": smooth}
    )
    model = tiny_transformer()
    report = quantize_(model, Int8W8A8(protect=1, alpha=0.7), calibration=calibration)
    assert isinstance(model.layers[1].feed_forward.w2, nn.Linear)
    assert isinstance(model.layers[0].feed_forward.w2, W8A8Linear)
    assert torch.equal(model.layers[0].attention.to_q.smooth, smooth)
    assert model.layers[0].attention.to_k.smooth is None
    assert ("layers.0.attention.to_q", 0.7) in calibration.asked
    assert {r.layer: r.reason for r in report.rows}["layers.0.attention.to_q"] == "quantized, SmoothQuant alpha=0.7"


TWO_STEPS = SamplerSettings("TWO_STEPS", 2, (7.0, 3.0), mu=0.5, std=1.75, max_sequence_length=128)
FOX = Prompt("fox", "animals", "a fox", '{"high_level_description":"A red fox in snow."}')

# PSNR (dB, uint8 RGB, 64x64, 2 steps) of the tiny pipeline's image against the unquantized one; measured about
# 43 dB fp8, 49 dB int8, 56 dB q8_0, 37 dB q4_k, 28 dB nf4.
IMAGE_PSNR_FLOOR = {"fp8": 35.0, "int8_w8a8": 35.0, "q8_0": 35.0, "q4_k": 20.0, "nf4": 20.0}


def tiny_image(recipe=None) -> np.ndarray:
    pipe = load_pipeline("tiny-random")
    encoder, vae = pipe.text_encoder, pipe.vae
    if recipe is not None:
        quantize_(pipe, recipe)
        assert pipe.text_encoder is encoder and pipe.vae is vae
        assert quantized_names(pipe.transformer) and quantized_names(pipe.unconditional_transformer)
    return np.asarray(generate(pipe, [FOX], TWO_STEPS, resolution=(64, 64))[0].image).astype(np.float64)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = float(((image - reference) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def unquantized_image() -> np.ndarray:
    return tiny_image()


@pytest.mark.parametrize(
    "recipe", [FP8Reference(), Int8W8A8(), GGUF("q8_0"), GGUF("q4_k"), NF4()], ids=lambda r: r.name
)
def test_tiny_pipeline_images_stay_close_to_the_unquantized_ones(recipe, unquantized_image):
    assert psnr(tiny_image(recipe), unquantized_image) > IMAGE_PSNR_FLOOR[recipe.name]


@pytest.mark.gpu
@pytest.mark.parametrize(
    "recipe", [FP8Reference(), Int8W8A8(), GGUF("q8_0"), GGUF("q4_k"), NF4()], ids=lambda r: r.name
)
def test_quantized_model_runs_on_cuda_in_bf16_close_to_cpu(recipe):
    model = tiny_transformer(dtype=torch.bfloat16)
    quantize_(model, recipe)
    on_cpu = image_velocity(model, torch.bfloat16)
    model.cuda()
    with torch.no_grad():
        inputs = {k: v.cuda() for k, v in transformer_inputs(dtype=torch.bfloat16).items()}
        on_cuda = model(**inputs).sample[:, TEXT_TOKENS:].float().cpu()
    assert torch.isfinite(on_cuda).all()
    assert rel_l2(on_cuda, on_cpu) < 0.05  # same weights; bf16 kernels differ (int_mm vs exact_cpu agree exactly)
