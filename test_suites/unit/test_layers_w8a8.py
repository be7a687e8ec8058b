"""W8A8Linear: per-token int8 activations x per-channel int8 weights; three kernels, one arithmetic."""

import pytest
import torch
from torch import nn

from quantkit import codecs
from quantkit.errors import FormatError
from quantkit.nn import W8A8Linear
from quantkit.nn.w8a8 import exact_int_mm, int_mm, quantize_per_token


def make_linear(k: int, n: int, *, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


def test_per_token_activation_quantization_is_the_int8_codec_applied_to_rows():
    rows = torch.randn(7, 48) * torch.logspace(-3, 2, 7)[:, None]
    rows[3] = 0
    codes, scale = quantize_per_token(rows)
    packed = codecs.quantize(rows, "int8")
    assert torch.equal(codes, packed.data)
    assert torch.equal(scale, packed.scale)


@pytest.mark.parametrize(("m", "k", "n"), [(1, 16, 8), (5, 13, 7), (17, 416, 64), (33, 24, 9), (2, 256, 1024)])
def test_int_mm_and_exact_cpu_accumulators_agree_bit_exactly_including_padded_shapes(m, k, n):
    gen = torch.Generator().manual_seed(m * k * n)
    x_q = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    w_q = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    reference = x_q.to(torch.int64) @ w_q.to(torch.int64).t()
    assert int_mm(x_q, w_q).dtype == torch.int32
    assert torch.equal(int_mm(x_q, w_q).to(torch.int64), reference)
    assert torch.equal(exact_int_mm(x_q, w_q).to(torch.int64), reference)


def test_exact_cpu_stays_exact_where_float32_accumulation_would_not():
    k = 53248  # Ideogram 4's llm_cond_proj: sums reach ~8.6e8, far beyond float32's 2**24 exact integers
    x_q = torch.full((1, k), 127, dtype=torch.int8)
    w_q = torch.full((2, k), 127, dtype=torch.int8)
    w_q[1, ::3] = -127
    reference = x_q.to(torch.int64) @ w_q.to(torch.int64).t()
    assert torch.equal(exact_int_mm(x_q, w_q).to(torch.int64), reference)
    assert int(reference[0, 0]) == k * 127 * 127


def test_int_mm_and_exact_cpu_layer_outputs_are_identical():
    layer = W8A8Linear.from_linear(make_linear(64, 24))
    x = torch.randn(3, 5, 64)
    layer.kernel = "int_mm"
    via_int_mm = layer(x)
    layer.kernel = "exact_cpu"
    assert torch.equal(via_int_mm, layer(x))


@pytest.mark.parametrize("kernel", ["auto", "int_mm", "exact_cpu", "fake_quant"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_kernel_stays_close_to_the_float_linear(kernel, dtype):
    linear = make_linear(256, 128).to(dtype)
    layer = W8A8Linear.from_linear(linear, kernel=kernel)
    x = torch.randn(2, 9, 256, dtype=dtype)
    out = layer(x)
    assert out.shape == (2, 9, 128)
    assert out.dtype == dtype
    assert rel_err(out, linear(x)) < 0.02


def test_fake_quant_is_quantize_dequantize_then_matmul_in_the_compute_dtype():
    linear = make_linear(32, 16).to(torch.bfloat16)
    layer = W8A8Linear.from_linear(linear, kernel="fake_quant")
    x = torch.randn(4, 32, dtype=torch.bfloat16)
    x_q, x_scale = quantize_per_token(x.float())
    w = layer.weight.float() * layer.weight_scale[:, None]
    expected = nn.functional.linear(
        (x_q.float() * x_scale[:, None]).bfloat16(), w.bfloat16(), linear.bias.detach().bfloat16()
    )
    assert torch.equal(layer(x), expected)


def test_without_a_smoothing_vector_nothing_is_smoothed():
    layer = W8A8Linear.from_linear(make_linear(32, 16))
    assert layer.smooth is None
    assert "smooth" not in layer.state_dict()


def test_smoothing_divides_activations_and_multiplies_weights_per_input_channel():
    linear = make_linear(32, 16)
    smooth = torch.rand(32) * 4 + 0.25
    smoothed = W8A8Linear.from_linear(linear, smooth=smooth)
    folded = make_linear(32, 16)
    folded.weight.data = linear.weight.data * smooth[None, :]
    folded.bias.data = linear.bias.data.clone()
    plain = W8A8Linear.from_linear(folded)
    x = torch.randn(6, 32)
    assert torch.equal(smoothed(x), plain(x / smooth))


def test_smoothquant_vector_reduces_the_error_of_outlier_activation_channels():
    linear = make_linear(64, 32)
    x = torch.randn(16, 64)
    x[:, [3, 40]] *= 60  # the spiky channels SmoothQuant migrates into the weights
    alpha = 0.5
    smooth = x.abs().amax(0) ** alpha / linear.weight.detach().abs().amax(0) ** (1 - alpha)
    plain_error = rel_err(W8A8Linear.from_linear(linear)(x), linear(x))
    smooth_error = rel_err(W8A8Linear.from_linear(linear, smooth=smooth)(x), linear(x))
    assert smooth_error < 0.5 * plain_error


def test_smoothing_vector_must_fit_and_be_positive():
    with pytest.raises(FormatError, match="shape"):
        W8A8Linear.from_linear(make_linear(32, 16), smooth=torch.ones(31))
    with pytest.raises(FormatError, match="positive"):
        W8A8Linear.from_linear(make_linear(32, 16), smooth=torch.zeros(32))


def test_state_dict_round_trip_restores_an_identical_layer():
    source = W8A8Linear.from_linear(make_linear(48, 24), smooth=torch.rand(48) + 0.5)
    state = source.state_dict()
    assert {k: v.dtype for k, v in state.items()} == {
        "weight": torch.int8,
        "weight_scale": torch.float32,
        "bias": torch.float32,
        "smooth": torch.float32,
    }
    fresh = W8A8Linear.from_linear(make_linear(48, 24, seed=9), smooth=torch.ones(48))
    fresh.load_state_dict(state)
    x = torch.randn(5, 48)
    assert torch.equal(fresh(x), source(x))


def test_dtype_casts_leave_packed_storage_alone_and_output_follows_the_input():
    layer = W8A8Linear.from_linear(make_linear(32, 16)).to(torch.bfloat16)
    assert layer.weight.dtype == torch.int8
    assert layer.weight_scale.dtype == torch.float32
    assert layer(torch.randn(2, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_unknown_kernel_is_rejected():
    with pytest.raises(FormatError, match="kernel"):
        W8A8Linear.from_linear(make_linear(32, 16), kernel="triton")


def test_nan_weight_is_a_clear_error_naming_the_layer():
    linear = make_linear(32, 16)
    linear.weight.data[2, 3] = float("nan")
    with pytest.raises(FormatError, match=r"blocks\.0\.w2: int8 cannot encode NaN"):
        W8A8Linear.from_linear(linear, name="blocks.0.w2")


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "k", "n"), [(1, 64, 24), (17, 416, 64), (300, 256, 1024)])
def test_cuda_int_mm_accumulators_equal_exact_cpu(m, k, n):
    gen = torch.Generator().manual_seed(m + k + n)
    x_q = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    w_q = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    assert torch.equal(int_mm(x_q.cuda(), w_q.cuda()).cpu(), exact_int_mm(x_q, w_q))
    layer = W8A8Linear.from_linear(make_linear(k, n))
    x = torch.randn(m, k)
    layer.kernel = "exact_cpu"
    on_cpu = layer(x)
    assert layer.cuda().resolved_kernel(x.cuda()) == "int_mm"
    assert torch.equal(layer(x.cuda()).cpu(), on_cpu)
