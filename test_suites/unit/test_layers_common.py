"""What every quantized layer shares: the format -> layer map, its printed summary, and device moves."""

import pytest
import torch
from torch import nn

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
