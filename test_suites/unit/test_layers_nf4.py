"""NF4Linear: bitsandbytes' 4-bit kernel where bitsandbytes runs, the codec's dequantize elsewhere; same result."""

import bitsandbytes as bnb
import pytest
import torch
from torch import nn

from quantkit.errors import FormatError
from quantkit.nn import NF4Linear


def make_linear(k: int = 256, n: int = 64, *, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(k, n)
    nn.init.normal_(linear.weight, std=0.02)  # NF4's codebook assumes normally distributed weights
    return linear


@pytest.mark.parametrize("double_quant", [False, True])
def test_weight_decodes_exactly_as_bitsandbytes_dequantize_4bit(double_quant):
    layer = NF4Linear.from_linear(make_linear(), double_quant=double_quant)
    decoded = bnb.functional.dequantize_4bit(layer.weight, layer.quant_state(torch.float32))
    assert torch.equal(decoded, layer.dequantized_weight(torch.float32))


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens", [1, 7])
def test_bitsandbytes_kernel_and_dequantize_path_agree(double_quant, dtype, tokens):
    linear = make_linear().to(dtype)
    layer = NF4Linear.from_linear(linear, double_quant=double_quant)
    x = torch.randn(tokens, 256, dtype=dtype)
    assert layer.resolved_kernel(x) == "bnb"  # bitsandbytes 0.50 runs on CPU
    via_bnb = layer(x)
    layer.kernel = "dequant"
    assert torch.equal(layer(x), via_bnb)
    assert via_bnb.dtype == dtype


def test_output_is_close_to_the_float_linear():
    linear = make_linear()
    x = torch.randn(8, 256)
    reference = linear(x)
    error = (NF4Linear.from_linear(linear)(x) - reference).norm() / reference.norm()
    assert error < 0.12  # 16 levels per block of 64: ~9% relative error on Gaussian weights


def test_state_dict_round_trip_with_double_quantization():
    source = NF4Linear.from_linear(make_linear(), blocksize=128, double_quant=True)
    state = source.state_dict()
    assert set(state) == {
        "weight",
        "weight_scale",
        "weight_blocksize",
        "weight_nested_absmax",
        "weight_nested_offset",
        "bias",
    }
    assert state["weight"].dtype == torch.uint8 and state["weight_scale"].dtype == torch.uint8
    fresh = NF4Linear.from_linear(make_linear(seed=5), blocksize=128, double_quant=True)
    fresh.load_state_dict(state)
    x = torch.randn(3, 256)
    assert torch.equal(fresh(x), source(x))


def test_unknown_kernel_is_rejected():
    with pytest.raises(FormatError, match="kernel"):
        NF4Linear.from_linear(make_linear()).kernel = "marlin"


@pytest.mark.gpu
@pytest.mark.parametrize("double_quant", [False, True])
def test_cuda_bitsandbytes_kernel_matches_the_dequantize_path(double_quant):
    linear = make_linear().to(torch.bfloat16)
    layer = NF4Linear.from_linear(linear, double_quant=double_quant).cuda()
    x = torch.randn(33, 256, dtype=torch.bfloat16, device="cuda")
    assert layer.resolved_kernel(x) == "bnb"
    via_bnb = layer(x)
    layer.kernel = "dequant"
    torch.testing.assert_close(via_bnb, layer(x), rtol=2e-2, atol=2e-2)  # bf16 matmuls by different kernels
