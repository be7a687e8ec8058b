"""NF4Linear: bitsandbytes' 4-bit kernel where bitsandbytes runs, the codec's dequantize elsewhere; same result."""

import bitsandbytes as bnb
import pytest
import torch
from torch import nn

from quantkit.errors import FormatError
from quantkit.nn import NF4Linear
from test_suites.oracles import bitsandbytes_kernels as bnb_kernels
from test_suites.oracles import nf4_reference


def make_linear(k: int = 256, n: int = 64, *, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(k, n)
    nn.init.normal_(linear.weight, std=0.02)  # NF4's codebook assumes normally distributed weights
    return linear


@pytest.mark.parametrize("double_quant", [False, True])
def test_weight_decodes_as_the_reference_and_bitsandbytes_kernel_is_within_its_tolerance(record_property, double_quant):
    linear = make_linear()
    layer = NF4Linear.from_linear(linear, double_quant=double_quant)
    state = layer.quant_state(torch.float32)
    reference = nf4_reference.decode_state(layer.weight, state, torch.float32)
    assert torch.equal(layer.dequantized_weight(torch.float32), reference)
    with bnb_kernels.dequantize_4bit_path((64, 256), 64, torch.float32) as path:
        theirs = bnb.functional.dequantize_4bit(layer.weight, state)
    result = bnb_kernels.compare(linear.weight.detach(), theirs, reference, 64, path[0])
    record_property("bitsandbytes_dequantize_4bit", result.summary())
    assert result.accepted, f"beyond what bitsandbytes' own tests accept: {result.summary()}"


# bitsandbytes 0.50.1 tests/test_autograd.py::test_matmul_4bit: A ~ N(0, 1) of [64, 64], B xavier-uniform [96, 64],
# mean |matmul_4bit(A, quantized B) - A @ B.T| < 0.115. The same inputs here, for both kernels of the layer.
MATMUL_4BIT_MEAN_ERROR = 0.115


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens", [1, 64])
def test_bitsandbytes_kernel_and_dequantize_path_are_within_bitsandbytes_matmul_tolerance(
    record_property, double_quant, dtype, tokens
):
    torch.manual_seed(1)
    linear = nn.Linear(64, 96, bias=False)
    nn.init.xavier_uniform_(linear.weight)
    layer = NF4Linear.from_linear(linear.to(dtype), double_quant=double_quant)
    x = torch.randn(tokens, 64, dtype=dtype)
    exact = (x.double() @ linear.weight.detach().double().t()).float()
    assert layer.resolved_kernel(x) == "bnb"  # bitsandbytes 0.50 runs on CPU; 64 inputs are whole blocks
    via_bnb = layer(x)
    layer.kernel = "dequant"
    via_dequant = layer(x)
    assert via_bnb.dtype == via_dequant.dtype == dtype
    errors = {
        name: float((out.float() - exact).abs().mean()) for name, out in [("bnb", via_bnb), ("dequant", via_dequant)]
    }
    record_property(
        "nf4_matmul", f"mean error {errors}, max |bnb - dequant| {float((via_bnb - via_dequant).abs().max()):.3g}"
    )
    assert max(errors.values()) < MATMUL_4BIT_MEAN_ERROR, f"{errors}: bitsandbytes' test_matmul_4bit accepts < 0.115"


def test_on_cpu_rows_that_are_not_whole_blocks_never_reach_bitsandbytes_kernel():
    # bitsandbytes 0.50's AVX-512 CPU dequantize uses the wrong block scales for such rows (96 inputs, blocks of 64).
    layer = NF4Linear.from_linear(make_linear(k=96))
    x = torch.randn(3, 96)
    assert layer.resolved_kernel(x) == "dequant"
    layer.kernel = "bnb"
    with pytest.raises(
        FormatError,
        match=r"in_features \(96\) to be a multiple of the blocksize \(64\): bitsandbytes' AVX-512 CPU dequantize "
        r"reads the wrong block scales otherwise\. Use kernel='auto' or 'dequant' for this layer\.$",
    ):
        layer(x)
    assert NF4Linear.from_linear(make_linear(k=128)).resolved_kernel(torch.randn(3, 128)) == "bnb"


def test_from_linear_defaults_to_blocks_of_64_without_double_quantization_and_honours_a_blocksize():
    layer = NF4Linear.from_linear(make_linear())
    assert int(layer.weight_blocksize) == 64
    assert layer.weight_scale.dtype == torch.float32  # plain absmaxes: no nested quantization
    assert "weight_nested_absmax" not in layer.state_dict()
    assert int(NF4Linear.from_linear(make_linear(), blocksize=128).weight_blocksize) == 128


@pytest.mark.parametrize("double_quant", [False, True])
def test_quant_state_is_the_state_bitsandbytes_quantize_4bit_builds_for_the_same_weight(double_quant):
    """The layer's buffers rebuilt as a QuantState must be the one ``bnb.functional.quantize_4bit`` returns, the
    NF4 code and the nested 8-bit map included (``dequantize_4bit`` decodes with them)."""
    linear = make_linear(k=128, n=32)
    layer = NF4Linear.from_linear(linear, double_quant=double_quant)
    codes, theirs = bnb.functional.quantize_4bit(
        linear.weight.detach(), blocksize=64, quant_type="nf4", compress_statistics=double_quant
    )
    ours = layer.quant_state(torch.float32)
    assert torch.equal(layer.weight, codes)

    def fields(state, names=("absmax", "code", "offset", "blocksize", "quant_type", "dtype", "shape")):
        values = {name: getattr(state, name) for name in names}
        return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in values.items()}

    assert fields(ours) == fields(theirs)
    assert (ours.state2 is None) == (theirs.state2 is None) == (not double_quant)
    if double_quant:
        nested = ("absmax", "code", "blocksize", "dtype")
        assert fields(ours.state2, nested) == fields(theirs.state2, nested)


def test_dequantize_kernel_adds_the_bias_in_the_input_dtype():
    layer = NF4Linear.from_linear(make_linear())
    layer.kernel = "dequant"
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    expected = nn.functional.linear(x, layer.dequantized_weight(torch.bfloat16), layer.bias.to(torch.bfloat16))
    assert torch.equal(layer(x), expected)
    assert not torch.equal(layer(x), nn.functional.linear(x, layer.dequantized_weight(torch.bfloat16)))


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


@pytest.mark.gpu
@pytest.mark.parametrize("double_quant", [False, True])
def test_cuda_quant_state_lives_on_the_weight_device(double_quant):
    """bitsandbytes' CUDA kernels read the NF4 code and the nested 8-bit map from the QuantState: on the GPU."""
    layer = NF4Linear.from_linear(make_linear(), double_quant=double_quant).cuda()
    state = layer.quant_state(torch.bfloat16)
    assert state.code.device.type == state.absmax.device.type == "cuda"
    if double_quant:
        assert state.state2.code.device.type == state.state2.absmax.device.type == "cuda"
