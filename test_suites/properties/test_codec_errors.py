"""What a codec's refusal says: the tensor's name (``tensor`` when none is given), the offending element's index and
row for any number of dims, the rule that was broken, and what to do about it."""

from __future__ import annotations

import pytest
import torch

from quantkit.codecs import fp8_e4m3, int8, q4_k, quantize
from quantkit.errors import FormatError, WeightRangeError


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
    with pytest.raises(WeightRangeError, match=rf"^w: int8 computes in float32, .* at {where} is beyond"):
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
