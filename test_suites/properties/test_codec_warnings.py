"""Encoding is silent: no resize or dtype warning from a codec's scratch buffers, whatever the chunking."""

import warnings

import pytest
import torch

from quantkit.codecs import FORMATS, quantize


def _weight() -> torch.Tensor:
    w = torch.randn(64, 512, generator=torch.Generator().manual_seed(3), dtype=torch.float32) * 0.02
    w[:, 5] *= 40.0
    return w


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoding_raises_no_warning(fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize(_weight(), fmt)


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
