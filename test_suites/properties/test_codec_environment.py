"""What a codec stores depends on the weight alone: not on torch's default dtype (a loader may have set float64),
and encoding is silent (no resize or dtype warning from its scratch buffers)."""

import warnings

import pytest
import torch
from test_codec_contract import same_storage

from quantkit.codecs import FORMATS, codec, quantize
from quantkit.errors import FormatError


def _weight() -> torch.Tensor:
    w = torch.randn(64, 512, generator=torch.Generator().manual_seed(3), dtype=torch.float32) * 0.02
    w[:, 5] *= 40.0
    return w


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_s_default_dtype_does_not_change_what_a_codec_stores(fmt):
    expected = quantize(_weight(), fmt)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        packed = quantize(_weight(), fmt)
    finally:
        torch.set_default_dtype(before)
    assert same_storage(packed, expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoding_raises_no_warning(fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize(_weight(), fmt)


def test_an_unknown_format_lists_the_known_ones():
    with pytest.raises(FormatError) as error:
        codec("q5_k")
    assert str(error.value) == "unknown format 'q5_k'; known formats: " + ", ".join(FORMATS)


def test_a_weight_of_several_chunks_encodes_without_warning_on_one_thread():
    """On one thread the chunks share one scratch sized for the first, largest chunk; the smaller last chunk uses
    views of it (129 x 4096 is 16,512 Q8_0 blocks: a chunk of 16,384 and one of 128)."""
    w = torch.randn(129, 4096, generator=torch.Generator().manual_seed(4), dtype=torch.float32) * 0.02
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quantize(w, "q8_0")
    finally:
        torch.set_num_threads(before)
