"""Codecs put what they pack on the weight's device and in the format's dtypes, whatever torch's global defaults
are: a user who ran ``torch.set_default_device("cuda")`` or ``torch.set_default_dtype(torch.float64)`` still gets
CPU packed tensors for a CPU weight, float32 scales, and the same bytes. (With no GPU here, the ``meta`` device
stands in for "some other default device": a tensor created there has no values, so anything packed on it fails.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from test_codec_contract import same_storage

from quantkit.codecs import FORMATS, q4_k, quantize


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _weight() -> torch.Tensor:
    return torch.randn(8, 512, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("fmt", ["int8", "fp8_e4m3", "q4_k"])
def test_packed_tensors_stay_on_the_weights_device_under_another_default_device(fmt):
    w = _weight()
    expected = quantize(w, fmt)
    with torch.device("meta"):
        packed = quantize(w, fmt)
    assert packed.data.device == w.device
    assert torch.equal(packed.data.view(torch.uint8), expected.data.view(torch.uint8))
    if expected.scale is not None:
        assert packed.scale.device == w.device
        assert torch.equal(packed.scale, expected.scale)


@pytest.mark.parametrize("fmt", ["int8", "fp8_e4m3"])
def test_per_row_scales_are_float32_under_a_float64_default_dtype(fmt):
    w = _weight()
    with default_dtype(torch.float64):
        packed = quantize(w, fmt)
    assert packed.scale.dtype == torch.float32
    assert torch.equal(packed.scale, quantize(w, fmt).scale)


def test_the_eager_q4_k_path_gives_the_same_bytes_under_other_defaults():
    """The eager path (CUDA, or CPU without numba) allocates its own work tensors: they must follow the blocks."""
    blocks = _weight().reshape(-1, 256) * 0.02
    expected = q4_k._quantize_blocks_fused(blocks)
    with default_dtype(torch.float64):
        assert torch.equal(q4_k._quantize_blocks_eager(blocks), expected)
    with torch.device("meta"):
        assert torch.equal(q4_k._quantize_blocks_eager(blocks), expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_codec_stores_the_same_bytes_under_a_float64_default_dtype(fmt):
    """Q8_0's scratch buffers once took the default dtype, and encoding crashed under float64."""
    w = _weight() * 0.02
    w[:, 5] *= 40.0
    expected = quantize(w, fmt)
    with default_dtype(torch.float64):
        packed = quantize(w, fmt)
    assert same_storage(packed, expected)
