"""fp8 e4m3 per-row scaled: saturates instead of producing NaN, bounded relative error, exact negation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from quantkit.codecs import fp8_e4m3
from quantkit.errors import FormatError

E4M3_MIN_SUBNORMAL = 2.0**-9


def weights(rows: int, cols: int, seed: int, magnitude: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = (
        torch.randn(rows, cols, generator=g)
        * magnitude
        * torch.logspace(-3, 0, cols)[torch.randperm(cols, generator=g)]
    )
    w[torch.rand(w.shape, generator=g) < 0.05] = 0.0
    return w.to(dtype)


shapes = st.tuples(st.integers(1, 24), st.integers(1, 200))
seeds = st.integers(0, 2**31 - 1)
magnitudes = st.sampled_from([1e-30, 1e-3, 0.02, 1.0, 1e4, 1e30])
dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])
half_safe_magnitudes = st.sampled_from([1e-3, 0.02, 1.0, 100.0])  # finite and nonzero in fp16 too


@given(shapes, seeds, half_safe_magnitudes, dtypes)
def test_codes_are_always_finite_and_saturate_at_448(shape, seed, magnitude, dtype):
    w = weights(*shape, seed, magnitude, dtype)
    packed = fp8_e4m3.quantize(w)
    decoded = packed.data.float()
    assert bool(torch.isfinite(decoded).all())
    assert float(decoded.abs().max()) <= 448.0
    assert bool(torch.isfinite(fp8_e4m3.dequantize(packed)).all())


def test_values_that_round_above_448_saturate_instead_of_becoming_nan():
    # Row max 448 * s; neighbours just under it scale to ~447.99 and must not cast to NaN (PyTorch's cast does not
    # saturate: 480 and above become NaN).
    w = torch.tensor([[448.0, 447.99, -447.999, 1.0]]) * 1e-3
    assert bool(torch.isfinite(fp8_e4m3.quantize(w).data.float()).all())


@given(shapes, seeds, half_safe_magnitudes, dtypes)
def test_error_is_at_most_half_an_fp8_ulp_relative_or_half_the_smallest_subnormal(shape, seed, magnitude, dtype):
    w = weights(*shape, seed, magnitude, dtype).float()
    packed = fp8_e4m3.quantize(w)
    error = (fp8_e4m3.dequantize(packed) - w).abs()
    scale = packed.scale[:, None]
    bound = torch.maximum(w.abs() * 2.0**-4, scale * E4M3_MIN_SUBNORMAL / 2) * (1 + 1e-5)
    assert bool((error <= bound).all())


@given(shapes, seeds, magnitudes)
def test_negating_the_weights_negates_the_codes_exactly(shape, seed, magnitude):
    w = weights(*shape, seed, magnitude)
    pos, neg = fp8_e4m3.quantize(w), fp8_e4m3.quantize(-w)
    assert torch.equal(neg.data.float(), -pos.data.float())
    assert torch.equal(neg.scale, pos.scale)


@given(shapes, seeds, st.sampled_from([1e-3, 0.02, 1.0, 1e4]))
def test_requantizing_the_dequantized_tensor_gives_the_same_codes(shape, seed, magnitude):
    packed = fp8_e4m3.quantize(weights(*shape, seed, magnitude))
    again = fp8_e4m3.quantize(fp8_e4m3.dequantize(packed))
    assert torch.equal(again.data.float(), packed.data.float())


@given(shapes, seeds, magnitudes, st.integers(0, 100))
def test_changing_one_row_leaves_every_other_row_unchanged(shape, seed, magnitude, which):
    w = weights(*shape, seed, magnitude)
    before = fp8_e4m3.quantize(w)
    row = which % w.shape[0]
    w[row] = w[row] * 5.0 + 1.0
    after = fp8_e4m3.quantize(w)
    others = torch.arange(w.shape[0]) != row
    assert torch.equal(before.data[others].float(), after.data[others].float())
    assert torch.equal(before.scale[others], after.scale[others])


def test_zeros_and_all_zero_rows_stay_exact_zeros():
    w = torch.zeros(3, 40)
    w[1, :10] = torch.linspace(-2, 3, 10)
    out = fp8_e4m3.dequantize(fp8_e4m3.quantize(w))
    assert torch.equal(out[w == 0], torch.zeros(int((w == 0).sum())))


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 4)])
def test_any_accepted_shape_round_trips_to_its_shape(shape):
    packed = fp8_e4m3.quantize(torch.randn(shape))
    assert fp8_e4m3.dequantize(packed, torch.bfloat16).shape == shape


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_rejected(bad):
    w = torch.randn(4, 8)
    w[0, 5] = bad
    with pytest.raises(FormatError, match="NaN or Inf"):
        fp8_e4m3.quantize(w)


def test_codes_stay_finite_at_448_for_rows_of_subnormal_weights():
    """For a subnormal row maximum, ``max / 448`` rounds to a coarse subnormal step (670 / 448 units of 2**-149 round
    to 1 unit), so ``w / s`` reaches 670, which the non-saturating cast would turn into NaN: the clamp saturates it."""
    unit = 2.0**-149
    w = torch.tensor([[-670 * unit, 670 * unit, unit]])
    packed = fp8_e4m3.quantize(w)
    assert packed.data.to(torch.float32).tolist() == [[-448.0, 448.0, 1.0]]
