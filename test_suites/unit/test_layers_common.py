"""What every quantized layer shares: the format -> layer map, its printed summary, and device moves."""

import pytest
import torch
from torch import nn

from quantkit import codecs
from quantkit.errors import FormatError
from quantkit.nn import FP8Linear, GGUFLinear, NF4Linear, W8A8Linear, layer_class


@pytest.mark.parametrize(
    ("fmt", "cls"),
    [("int8", W8A8Linear), ("fp8_e4m3", FP8Linear), ("q4_k", GGUFLinear), ("q8_0", GGUFLinear), ("nf4", NF4Linear)],
)
def test_each_codec_format_has_its_layer(fmt, cls):
    assert layer_class(fmt) is cls


def test_a_format_without_a_layer_names_the_formats_that_have_one():
    with pytest.raises(FormatError, match=r"^no quantized layer for format 'q2_k'; layers exist for fp8_e4m3, int8, "):
        layer_class("q2_k")


def test_the_printed_layer_says_its_shape_bias_format_and_kernel():
    with_bias = W8A8Linear.from_linear(nn.Linear(64, 32), kernel="exact_cpu")
    assert repr(with_bias) == (
        "W8A8Linear(in_features=64, out_features=32, bias=True, fmt=int8, kernel=exact_cpu, smooth=False)"
    )
    smoothed = W8A8Linear.from_linear(nn.Linear(64, 32, bias=False), smooth=torch.full((64,), 2.0))
    assert repr(smoothed).endswith("bias=False, fmt=int8, kernel=auto, smooth=True)")


def test_moving_and_casting_at_once_moves_every_buffer_but_keeps_its_dtype():
    layer = FP8Linear.from_linear(nn.Linear(64, 32))
    dtypes = {name: b.dtype for name, b in layer.named_buffers()}
    layer.to("meta", torch.float16)
    assert {name: (b.device.type, b.dtype) for name, b in layer.named_buffers()} == {
        name: ("meta", dtype) for name, dtype in dtypes.items()
    }


def nan_linear(k=64, n=8):
    linear = nn.Linear(k, n)
    with torch.no_grad():
        linear.weight[0, 0] = float("nan")
    return linear


@pytest.mark.parametrize(
    "build",
    [
        lambda: FP8Linear.from_linear(nan_linear()),
        lambda: NF4Linear.from_linear(nan_linear()),
        lambda: W8A8Linear.from_linear(nan_linear()),
        lambda: GGUFLinear.from_linear(nn.Linear(100, 8), "q4_k"),
        lambda: W8A8Linear.from_linear(nn.Linear(64, 8), smooth=torch.ones(3)),
    ],
    ids=["fp8", "nf4", "int8", "q4_k_row", "smooth_shape"],
)
def test_from_linear_errors_call_an_unnamed_layer_linear(build):
    with pytest.raises(FormatError, match=r"^linear: "):
        build()


def test_a_layer_built_from_packed_weights_names_itself_in_smooth_errors():
    packed = W8A8Linear.from_linear(nn.Linear(64, 8)).packed()
    with pytest.raises(FormatError, match=r"^W8A8Linear: smooth vector has shape \(3,\), expected \(64,\)$"):
        W8A8Linear(packed, smooth=torch.ones(3))


@pytest.mark.parametrize(
    "build", [FP8Linear.from_linear, lambda linear: GGUFLinear.from_linear(linear, "q8_0")], ids=["fp8", "q8_0"]
)
def test_from_linear_keeps_a_copy_of_the_bias_and_no_bias_stays_none(build):
    linear = nn.Linear(64, 32)
    layer = build(linear)
    assert torch.equal(layer.bias, linear.bias.detach()) and layer.bias.data_ptr() != linear.bias.data_ptr()
    assert build(nn.Linear(64, 32, bias=False)).bias is None


def test_a_layer_needs_a_two_dimensional_weight_and_a_bias_of_one_value_per_output():
    """Both errors name the layer class, so a failing conversion says which layer refused what."""
    with pytest.raises(FormatError, match=r"^W8A8Linear needs a 2-D \[out, in\] weight, got shape \(2, 4, 8\)$"):
        W8A8Linear(codecs.quantize(torch.randn(2, 4, 8), "int8"))
    packed = codecs.quantize(torch.randn(16, 32), "int8")
    with pytest.raises(FormatError, match=r"^W8A8Linear: bias shape \(15,\) != \(16,\)$"):
        W8A8Linear(packed, torch.zeros(15))
    assert W8A8Linear(packed, torch.zeros(16)).bias.shape == (16,)
