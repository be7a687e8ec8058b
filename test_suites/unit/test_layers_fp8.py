"""FP8Linear: the published Ideogram 4 FP8 layout, dequantized to the compute dtype at every forward."""

import pytest
import torch
from torch import nn

from quantkit.errors import FormatError
from quantkit.nn import FP8Linear


def make_linear(k: int = 64, n: int = 32, *, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_is_the_published_fp8linear_formula(dtype):
    linear = make_linear().to(dtype)
    layer = FP8Linear.from_linear(linear)
    x = torch.randn(3, 4, 64, dtype=dtype)
    weight = layer.weight.to(dtype) * layer.weight_scale.to(dtype).unsqueeze(1)
    assert torch.equal(layer(x), nn.functional.linear(x, weight, linear.bias.detach()))
    assert layer(x).dtype == dtype


def test_output_is_close_to_the_float_linear():
    linear = make_linear(256, 128)
    x = torch.randn(8, 256)
    reference = linear(x)
    error = (FP8Linear.from_linear(linear)(x) - reference).norm() / reference.norm()
    assert error < 0.04  # e4m3 keeps 3 mantissa bits: per-weight relative error up to 1/16


def test_state_dict_has_the_published_keys_and_round_trips():
    source = FP8Linear.from_linear(make_linear(bias=False))
    state = source.state_dict()
    assert {k: v.dtype for k, v in state.items()} == {"weight": torch.float8_e4m3fn, "weight_scale": torch.float32}
    fresh = FP8Linear.from_linear(make_linear(bias=False, seed=3))
    fresh.load_state_dict(state)
    x = torch.randn(2, 64)
    assert torch.equal(fresh(x), source(x))


def test_casting_the_layer_keeps_fp8_storage():
    layer = FP8Linear.from_linear(make_linear()).to(torch.bfloat16)
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert layer.weight_scale.dtype == torch.float32


def test_nan_weight_is_a_clear_error():
    linear = make_linear()
    linear.weight.data[0, 0] = float("inf")
    with pytest.raises(FormatError, match=r"final_layer\.linear: fp8_e4m3 cannot encode NaN or Inf"):
        FP8Linear.from_linear(linear, name="final_layer.linear")
