"""What a codec's refusal says: the tensor's name (``tensor`` when none is given), the offending element's index and
row for any number of dims, the rule that was broken, and what to do about it."""

from __future__ import annotations

import pytest
import torch

from quantkit.codecs import FORMATS, codec, fp8_e4m3, int8, q4_k, quantize
from quantkit.codecs.base import FLOAT32_MAX, check_input, validated
from quantkit.errors import FormatError, MetaTensorError, WeightRangeError


@pytest.mark.parametrize("module", [int8, fp8_e4m3, q4_k], ids=lambda m: m.FORMAT)
def test_a_codec_called_without_a_name_calls_the_weight_tensor(module):
    """Each codec module is public API: called directly, its messages still read ``tensor: <format> ...``."""
    w = torch.zeros(2, 256)
    w[1, 3] = float("nan")
    with pytest.raises(FormatError, match=rf"^tensor: {module.FORMAT} cannot encode NaN or Inf"):
        module.quantize(w)


def _float64_out_of_float32_range(shape: tuple[int, ...], index: tuple[int, ...]) -> torch.Tensor:
    w = torch.zeros(shape, dtype=torch.float64)
    w[index] = 1e300
    return w


@pytest.mark.parametrize(
    ("shape", "index", "where"),
    [
        ((5,), (3,), r"index \[3\] \(row 0\)"),  # a vector is one row
        ((4, 6), (2, 5), r"index \[2, 5\] \(row 2\)"),
        ((2, 3, 4), (1, 2, 3), r"index \[1, 2, 3\] \(row \(1, 2\)\)"),  # the row of a 3-D weight is a pair
    ],
)
def test_an_out_of_range_value_is_located_by_its_index_and_its_row(shape, index, where):
    """The row is the index over every dim but the last, so a 3-D weight's row is a tuple and a vector's is 0."""
    w = _float64_out_of_float32_range(shape, index)
    with pytest.raises(
        WeightRangeError,
        match=rf"^w: int8 computes in float32, .* at {where} is beyond .* Rescale the source weights or keep this "
        r"tensor in higher precision\.$",
    ):
        quantize(w, "int8", name="w")


def test_a_row_length_that_is_not_a_multiple_of_the_block_names_the_last_dim_of_any_weight():
    """The rule is about the last dim (the row), also for weights of more than two dims."""
    with pytest.raises(FormatError, match=r"conv\.weight: q4_k .* the row length 100 \(shape \(2, 3, 100\)\)"):
        quantize(torch.zeros(2, 3, 100), "q4_k", name="conv.weight")


def test_a_q4_k_scale_overflow_counts_the_broken_super_blocks_and_says_what_to_do():
    w = torch.zeros(4, 256)
    w[1:3, 0] = 1e8  # two super-blocks whose d overflows fp16
    with pytest.raises(
        WeightRangeError, match=r"; 2 super-block\(s\) affected\. Keep this tensor in higher precision\.$"
    ):
        quantize(w, "q4_k", name="w")


def test_float32s_largest_value_held_in_float64_is_accepted_and_a_larger_one_is_located():
    """The range check is strict: float32 holds ``FLOAT32_MAX`` itself; the first value beyond it is the one named."""
    check_input(torch.tensor([FLOAT32_MAX, -FLOAT32_MAX], dtype=torch.float64), "int8", "w")
    w = torch.tensor([FLOAT32_MAX, 1e300], dtype=torch.float64)
    with pytest.raises(WeightRangeError, match=r"float64 value 1e\+300 at index \[1\] \(row 0\)"):
        check_input(w, "int8", "w")


def test_input_checks_accept_a_vector_unless_more_dims_are_required():
    check_input(torch.ones(3), "int8", "bias")
    assert torch.equal(validated(torch.ones(3), "int8", "bias"), torch.ones(3))
    with pytest.raises(FormatError, match=r"^w: nf4 needs a non-empty tensor with at least 2 dims, got \(3,\)$"):
        validated(torch.ones(3), "nf4", "w", min_dims=2)


@pytest.mark.parametrize(
    ("w", "message"),
    [
        ([1.0, 2.0], r"^w: expected a torch\.Tensor for int8, got list$"),
        (torch.ones(2, 3, dtype=torch.int32), r"^w: int8 quantizes float tensors, got dtype torch\.int32$"),
        (torch.ones(0, 4), r"^w: int8 needs a non-empty tensor with at least 1 dims, got \(0, 4\)$"),
    ],
    ids=["not_a_tensor", "integer_dtype", "empty"],
)
def test_what_no_format_can_encode_is_refused_with_the_reason(w, message):
    with pytest.raises(FormatError, match=message):
        check_input(w, "int8", "w")


def test_a_meta_tensor_is_refused_with_advice_to_load_the_weights():
    with pytest.raises(
        MetaTensorError,
        match=r"^w: int8 encodes weight values, but this \(2, 3\) tensor is on the meta device .* Load the real "
        r"weights before quantizing; layer decisions need shapes only\.$",
    ):
        check_input(torch.empty(2, 3, device="meta"), "int8", "w")


def test_a_non_finite_refusal_counts_the_non_finite_values():
    w = torch.zeros(2, 4)
    w[0, 1], w[1, 2] = float("inf"), float("nan")
    with pytest.raises(FormatError, match=r"index \[0, 1\] \(2 of 8 values\)\. Fix the source weights\.$"):
        check_input(w, "int8", "w")


def test_an_unknown_format_lists_the_known_ones():
    with pytest.raises(FormatError) as error:
        codec("q5_k")
    assert str(error.value) == "unknown format 'q5_k'; known formats: " + ", ".join(FORMATS)
