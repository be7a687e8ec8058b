"""W8A8Linear: per-token int8 activations x per-channel int8 weights; three kernels, one arithmetic."""

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from quantkit import codecs
from quantkit.errors import FormatError
from quantkit.nn import W8A8Linear
from quantkit.nn.w8a8 import EXACT_INT32_MAX_K, exact_int_mm, int_mm, quantize_per_token


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


def test_activation_codes_stay_in_the_symmetric_int8_range_when_a_subnormal_scale_rounds_down():
    """A row of subnormal activations gets a scale that has lost precision: 130 units of 2**-149 over 127 rounds to
    one unit, so the row divides to +-130; the clamp keeps those codes at +-127 instead of wrapping around in int8."""
    unit = 2.0**-149  # float32's smallest subnormal
    rows = torch.tensor([[130.0, -3.0, 1.0], [-130.0, 2.0, 0.0]]) * unit
    codes, scale = quantize_per_token(rows)
    assert torch.equal(scale, torch.full((2,), unit))
    assert codes.tolist() == [[127, -3, 1], [-127, 2, 0]]


@pytest.mark.parametrize(("m", "k", "n"), [(1, 16, 8), (5, 13, 7), (17, 416, 64), (33, 24, 9), (2, 256, 1024)])
def test_int_mm_and_exact_cpu_accumulators_agree_bit_exactly_including_padded_shapes(m, k, n):
    gen = torch.Generator().manual_seed(m * k * n)
    x_q = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    w_q = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    reference = x_q.to(torch.int64) @ w_q.to(torch.int64).t()
    assert int_mm(x_q, w_q).dtype == torch.int32
    assert torch.equal(int_mm(x_q, w_q).to(torch.int64), reference)
    assert torch.equal(exact_int_mm(x_q, w_q).to(torch.int64), reference)


@pytest.mark.parametrize(
    ("m", "k", "n", "x_shape", "w_shape"),
    [
        (17, 16, 8, (17, 16), (16, 8)),  # already acceptable: nothing padded
        (5, 16, 8, (17, 16), (16, 8)),  # too few rows only
        (33, 24, 9, (33, 24), (24, 16)),  # N only
        (5, 13, 7, (17, 16), (16, 8)),  # M, K and N
        (40, 13, 16, (40, 16), (16, 16)),  # K only: both operands
    ],
)
def test_int_mm_pads_its_operands_to_the_smallest_shapes_the_cuda_kernel_accepts(
    monkeypatch, m, k, n, x_shape, w_shape
):
    """CUDA's torch._int_mm needs M > 16 and K, N multiples of 8 (the CPU op takes any shape, so the result alone
    cannot show it): every operand must reach those rules, with no more zero padding than they need."""
    seen = []
    real_int_mm = torch._int_mm

    def recording_int_mm(a, b):
        seen.append((tuple(a.shape), tuple(b.shape)))
        return real_int_mm(a, b)

    monkeypatch.setattr(torch, "_int_mm", recording_int_mm)
    gen = torch.Generator().manual_seed(m + k + n)
    x_q = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    w_q = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    out = int_mm(x_q, w_q)
    assert seen == [(x_shape, w_shape)]
    assert torch.equal(out.to(torch.int64), x_q.to(torch.int64) @ w_q.to(torch.int64).t())


def test_exact_cpu_takes_every_k_whose_int32_sums_cannot_overflow_and_refuses_the_next():
    """At K = EXACT_INT32_MAX_K the largest possible sum, K * 127**2, still fits in int32; one more input could
    overflow, and the error says which K was refused and where the limit is."""
    k = EXACT_INT32_MAX_K
    ones = torch.full((1, k), 127, dtype=torch.int8)
    assert int(exact_int_mm(ones, ones)) == k * 127 * 127
    assert k * 127 * 127 <= 2**31 - 1 < (k + 1) * 127 * 127
    more = torch.full((1, k + 1), 127, dtype=torch.int8)
    with pytest.raises(FormatError, match=rf"^exact_cpu: K={k + 1} could overflow int32 accumulators \(limit {k}\)$"):
        exact_int_mm(more, more)


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


def test_a_layer_built_from_packed_weights_picks_its_kernel_automatically():
    layer = W8A8Linear(codecs.quantize(torch.randn(16, 32), "int8"))
    assert layer.kernel == "auto"
    assert layer.resolved_kernel(torch.randn(2, 32)) == "exact_cpu"


def test_auto_kernel_is_int_mm_for_cuda_inputs_and_exact_cpu_otherwise_and_an_explicit_kernel_is_kept():
    """The choice reads only the input's ``is_cuda``, so a stand-in input exercises the CUDA choice on any machine."""
    layer = W8A8Linear.from_linear(make_linear(32, 16))
    cuda_input, cpu_input = SimpleNamespace(is_cuda=True), torch.randn(2, 32)
    assert (layer.resolved_kernel(cuda_input), layer.resolved_kernel(cpu_input)) == ("int_mm", "exact_cpu")
    for kernel in ("int_mm", "exact_cpu", "fake_quant"):
        layer.kernel = kernel
        assert (layer.resolved_kernel(cuda_input), layer.resolved_kernel(cpu_input)) == (kernel, kernel)


@pytest.mark.parametrize(("kernel", "runs_int_mm"), [("int_mm", True), ("exact_cpu", False), ("auto", False)])
def test_each_integer_kernel_runs_its_own_matmul(monkeypatch, kernel, runs_int_mm):
    """int_mm and exact_cpu give identical outputs by design, so only the call shows which one ran: ``int_mm``
    goes through torch._int_mm (cuBLASLt on CUDA), ``exact_cpu`` (and ``auto`` on CPU) through an int32 matmul."""
    calls = []
    real_int_mm = torch._int_mm
    monkeypatch.setattr(torch, "_int_mm", lambda a, b: calls.append(a.shape) or real_int_mm(a, b))
    layer = W8A8Linear.from_linear(make_linear(32, 16), kernel=kernel)
    layer(torch.randn(3, 32))
    assert bool(calls) is runs_int_mm


def test_a_float64_smoothing_vector_builds_the_layer_of_its_float32_copy():
    """The vector is stored, multiplied into the weight and divided out of activations in float32, whatever dtype
    the caller computed it in."""
    linear = make_linear(64, 32)
    smooth = torch.rand(64, dtype=torch.float64) * 4 + 0.25
    wide = W8A8Linear.from_linear(linear, smooth=smooth)
    narrow = W8A8Linear.from_linear(linear, smooth=smooth.float())
    assert wide.smooth.dtype == torch.float32
    assert {k: (v.dtype, v.tolist()) for k, v in wide.state_dict().items()} == {
        k: (v.dtype, v.tolist()) for k, v in narrow.state_dict().items()
    }
    x = torch.randn(8, 64)
    assert torch.equal(wide(x), narrow(x))


def test_a_float64_linear_becomes_the_layer_of_its_float32_copy():
    """Weights are quantized and outputs rescaled in float32 (the epilogue of ``int_mm`` on CUDA): a float64 source
    gives the same codes, scales and float32 outputs as its copy rounded to float32, smoothed or not."""
    wide = make_linear(64, 32).double()
    with torch.no_grad():  # float64 values that float32 cannot hold, so rounding early or late would show
        wide.weight.copy_(torch.randn(32, 64, dtype=torch.float64) * 0.1)
        wide.bias.copy_(torch.randn(32, dtype=torch.float64))
    narrow = copy.deepcopy(wide).float()
    smooth = torch.rand(64) * 4 + 0.25
    x = torch.randn(8, 64)
    for smoothing in (None, smooth):
        a = W8A8Linear.from_linear(wide, smooth=smoothing)
        b = W8A8Linear.from_linear(narrow, smooth=smoothing)
        assert torch.equal(a.weight, b.weight) and torch.equal(a.weight_scale, b.weight_scale)
        assert a.bias.dtype == torch.float64  # the bias keeps its dtype; the epilogue adds it in float32
        assert torch.equal(a(x), b(x))


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
    layer.kernel = "auto"
    assert layer.cuda().resolved_kernel(x.cuda()) == "int_mm"
    assert torch.equal(layer(x.cuda()).cpu(), on_cpu)


@pytest.mark.gpu
def test_cuda_exact_cpu_kernel_returns_to_the_input_device_and_a_cpu_smoothing_vector_fits_a_cuda_linear():
    """exact_cpu computes on the CPU but hands its accumulators back on the input's device; from_linear moves a
    smoothing vector to the weight's device before multiplying."""
    gen = torch.Generator().manual_seed(3)
    x_q = torch.randint(-127, 128, (5, 64), generator=gen, dtype=torch.int8)
    w_q = torch.randint(-127, 128, (24, 64), generator=gen, dtype=torch.int8)
    assert exact_int_mm(x_q.cuda(), w_q.cuda()).device.type == "cuda"
    linear, smooth = make_linear(64, 24), torch.rand(64) + 0.5
    on_cuda = W8A8Linear.from_linear(linear.cuda(), smooth=smooth, kernel="exact_cpu").cuda()
    on_cpu = W8A8Linear.from_linear(linear.cpu(), smooth=smooth, kernel="exact_cpu")
    assert torch.equal(on_cuda.weight.cpu(), on_cpu.weight)
    x = torch.randn(5, 64)
    out = on_cuda(x.cuda())
    assert out.device.type == "cuda"
    assert torch.equal(out.cpu(), on_cpu(x))
