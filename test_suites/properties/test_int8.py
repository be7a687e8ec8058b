"""int8 per-row symmetric: error within half a step, exact negation, and the other properties the format has."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from quantkit.codecs import int8
from quantkit.errors import FormatError


def weights(rows: int, cols: int, seed: int, magnitude: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * magnitude
    w[torch.rand(w.shape, generator=g) < 0.05] = 0.0
    return w.to(dtype)


shapes = st.tuples(st.integers(1, 24), st.integers(1, 200))
seeds = st.integers(0, 2**31 - 1)
magnitudes = st.sampled_from([1e-30, 1e-3, 0.02, 1.0, 1e4])
dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])
half_safe_magnitudes = st.sampled_from([1e-3, 0.02, 1.0, 100.0])  # finite and nonzero in fp16 too


@given(shapes, seeds, half_safe_magnitudes, dtypes)
def test_error_is_at_most_half_a_step_per_element(shape, seed, magnitude, dtype):
    w = weights(*shape, seed, magnitude, dtype)
    packed = int8.quantize(w)
    error = (int8.dequantize(packed) - w.float()).abs()
    assert bool((error <= packed.scale[:, None] * (0.5 + 1e-5)).all())


@given(shapes, seeds, magnitudes)
def test_codes_use_the_symmetric_range_and_the_row_maximum_maps_to_127(shape, seed, magnitude):
    w = weights(*shape, seed, magnitude)
    codes = int8.quantize(w).data
    assert int(codes.min()) >= -127
    nonzero_rows = w.abs().amax(dim=1) > 0
    assert bool((codes.abs().amax(dim=1)[nonzero_rows] == 127).all())


@given(shapes, seeds, magnitudes)
def test_negating_the_weights_negates_the_codes_exactly(shape, seed, magnitude):
    w = weights(*shape, seed, magnitude)
    pos, neg = int8.quantize(w), int8.quantize(-w)
    assert torch.equal(neg.data, -pos.data)
    assert torch.equal(neg.scale, pos.scale)


@given(shapes, seeds, magnitudes)
def test_requantizing_the_dequantized_tensor_gives_the_same_codes(shape, seed, magnitude):
    # The codes are a fixed point; the scale may move by an ulp (127 * s / 127 need not round back to s).
    packed = int8.quantize(weights(*shape, seed, magnitude))
    again = int8.quantize(int8.dequantize(packed))
    assert torch.equal(again.data, packed.data)
    torch.testing.assert_close(again.scale, packed.scale, rtol=2**-22, atol=0)


@given(shapes, seeds, magnitudes, st.integers(0, 100))
def test_changing_one_row_leaves_every_other_row_unchanged(shape, seed, magnitude, which):
    w = weights(*shape, seed, magnitude)
    before = int8.quantize(w)
    row = which % w.shape[0]
    w[row] = w[row] * 5.0 + 1.0
    after = int8.quantize(w)
    others = torch.arange(w.shape[0]) != row
    assert torch.equal(before.data[others], after.data[others])
    assert torch.equal(before.scale[others], after.scale[others])


def test_zeros_and_all_zero_rows_stay_exact_zeros():
    w = torch.zeros(3, 40)
    w[1, :10] = torch.linspace(-2, 3, 10)
    out = int8.dequantize(int8.quantize(w))
    assert torch.equal(out[w == 0], torch.zeros(int((w == 0).sum())))


def test_ties_round_half_to_even():
    w = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -2.5]])
    assert int8.quantize(w).data[0, 1:].tolist() == [0, 2, 2, 0, -2]


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 4), (4, 2, 3, 3)])
def test_any_accepted_shape_round_trips_to_its_shape(shape):
    packed = int8.quantize(torch.randn(shape))
    assert packed.data.shape == (shape[0], torch.Size(shape[1:]).numel())
    assert int8.dequantize(packed, torch.bfloat16).shape == shape


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_rejected(bad):
    w = torch.randn(4, 8)
    w[3, 0] = bad
    with pytest.raises(FormatError, match="NaN or Inf"):
        int8.quantize(w)


def test_codes_stay_within_127_for_rows_of_subnormal_weights():
    """For a subnormal row maximum, ``max / 127`` rounds to a coarse subnormal step (here 190 / 127 units of 2**-149
    round to 1 unit), so ``w / s`` can exceed 127: the clamp keeps the codes in range, on both sides."""
    unit = 2.0**-149
    w = torch.tensor([[-190 * unit, 190 * unit, unit]])
    packed = int8.quantize(w)
    assert packed.data.tolist() == [[-127, 127, 1]]
