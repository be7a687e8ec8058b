"""Q8_0: bytes identical to gguf-py (and so to llama.cpp's reference quantizer); the properties the format has."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from quantkit.codecs import q8_0
from quantkit.errors import FormatError, WeightRangeError

Q8_0 = gguf.GGMLQuantizationType.Q8_0


def weights(rows: int, blocks: int, seed: int, magnitude: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, blocks * 32, generator=g) * magnitude
    w[torch.rand(w.shape, generator=g) < 0.05] = 0.0
    return w.to(dtype)


@pytest.fixture(scope="session")
def reference_weights() -> torch.Tensor:
    """A transformer-sized slab with outlier rows and exact zeros, shared by the whole-tensor checks."""
    w = weights(96, 48, seed=1234, magnitude=0.02)
    w[::7] *= 40.0
    return w


shapes = st.tuples(st.integers(1, 6), st.integers(1, 4))
seeds = st.integers(0, 2**31 - 1)
magnitudes = st.sampled_from([1e-6, 1e-3, 0.02, 1.0, 300.0])
dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])


def gguf_bytes(w: torch.Tensor) -> np.ndarray:
    return gguf.quants.quantize(w.float().numpy(), Q8_0)


@given(shapes, seeds, magnitudes, dtypes)
def test_bytes_match_gguf_py(shape, seed, magnitude, dtype):
    w = weights(*shape, seed, magnitude, dtype)
    assert np.array_equal(q8_0.quantize(w).data.numpy(), gguf_bytes(w))


def test_half_way_values_round_away_from_zero_like_c_roundf():
    # amax 127 gives d = 1, so x * id is exactly x: every .5 is a tie that roundf sends away from zero.
    halves = torch.arange(-15.5, 16, 1.0)[:31]
    w = torch.cat([torch.tensor([127.0]), halves]).reshape(1, 32)
    packed = q8_0.quantize(w)
    qs = packed.data[0, 2:].view(torch.int8)[1:].tolist()
    assert qs == [int(np.sign(x) * np.floor(abs(x) + 0.5)) for x in halves.tolist()]
    assert np.array_equal(packed.data.numpy(), gguf_bytes(w))


def test_just_below_half_rounds_down():
    w = torch.zeros(1, 32)
    w[0, 0], w[0, 1] = 127.0, 0.5 - 2**-25
    assert q8_0.quantize(w).data[0, 3].item() == 0
    assert np.array_equal(q8_0.quantize(w).data.numpy(), gguf_bytes(w))


# Exact equality with gguf-py's and diffusers' float decoders holds on every machine, whatever their kernels do:
# an fp16 d (11 significant bits) times an int8 code (8 bits) is exact in float32, so nothing is ever rounded.
@given(shapes, seeds, magnitudes)
def test_dequantize_matches_gguf_py(shape, seed, magnitude):
    packed = q8_0.quantize(weights(*shape, seed, magnitude))
    assert np.array_equal(q8_0.dequantize(packed).numpy(), gguf.quants.dequantize(packed.data.numpy(), Q8_0))


@pytest.mark.slow  # importing diffusers takes ~15 s on the shared CI box
def test_dequantize_matches_diffusers_gguf_loader(reference_weights):
    from diffusers.quantizers.gguf.utils import dequantize_blocks_Q8_0

    packed = q8_0.quantize(reference_weights)
    theirs = dequantize_blocks_Q8_0(packed.data.reshape(-1, 34), 32, 34, dtype=torch.float32)
    assert torch.equal(q8_0.dequantize(packed), theirs.reshape(reference_weights.shape))


@given(shapes, seeds, magnitudes)
def test_error_is_at_most_half_a_step_plus_the_fp16_rounding_of_the_scale(shape, seed, magnitude):
    w = weights(*shape, seed, magnitude)
    blocks = w.reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    d16 = d.half().float()
    error = (q8_0.dequantize(q8_0.quantize(w)).reshape(-1, 32) - blocks).abs()
    assert bool((error <= d * (0.5 + 1e-6) + 127 * (d - d16).abs()).all())


@given(shapes, seeds, st.sampled_from([1e-3, 0.02, 1.0, 300.0]))
def test_requantizing_the_dequantized_tensor_gives_the_same_bytes(shape, seed, magnitude):
    # Holds whenever no block's scale rounds to fp16 zero (|w| above ~7.6e-6): then d' = fp16(d) exactly.
    packed = q8_0.quantize(weights(*shape, seed, magnitude))
    assert torch.equal(q8_0.quantize(q8_0.dequantize(packed)).data, packed.data)


@given(shapes, seeds, magnitudes)
def test_negating_the_weights_negates_the_codes_and_keeps_the_scales(shape, seed, magnitude):
    w = weights(*shape, seed, magnitude)
    pos, neg = q8_0.quantize(w).data.reshape(-1, 34), q8_0.quantize(-w).data.reshape(-1, 34)
    assert torch.equal(pos[:, :2], neg[:, :2])
    assert torch.equal(pos[:, 2:].view(torch.int8), -neg[:, 2:].view(torch.int8))


@given(shapes, seeds, magnitudes, st.integers(0, 23))
def test_changing_one_block_leaves_every_other_block_unchanged(shape, seed, magnitude, which):
    w = weights(*shape, seed, magnitude)
    before = q8_0.quantize(w).data.reshape(-1, 34)
    block = which % before.shape[0]
    w.view(-1, 32)[block] *= 3.0
    after = q8_0.quantize(w).data.reshape(-1, 34)
    others = torch.arange(before.shape[0]) != block
    assert torch.equal(before[others], after[others])


def test_zeros_stay_exact_zeros():
    w = torch.zeros(3, 64)
    w[0, :32] = torch.linspace(-1, 1, 32)
    out = q8_0.dequantize(q8_0.quantize(w))
    assert torch.equal(out[w == 0], torch.zeros(int((w == 0).sum())))


@pytest.mark.parametrize("shape", [(32,), (5, 64), (2, 3, 96), (4, 2, 2, 32)])
def test_any_accepted_shape_round_trips_to_its_shape(shape):
    w = torch.randn(shape)
    packed = q8_0.quantize(w)
    assert packed.data.shape == (int(np.prod(shape[:-1])), shape[-1] // 32 * 34)
    assert q8_0.dequantize(packed, torch.bfloat16).shape == shape
    assert q8_0.dequantize(packed, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_rejected(bad):
    w = torch.randn(4, 64)
    w[2, 7] = bad
    with pytest.raises(FormatError, match="NaN or Inf"):
        q8_0.quantize(w, name="blocks.0.attn.to_q.weight")


def test_rows_that_are_not_whole_blocks_are_rejected():
    message = r"^ff\.weight: q8_0 packs rows in blocks of 32 weights, but the row length 48 \(shape \(4, 48\)\) is not"
    with pytest.raises(FormatError, match=message):
        q8_0.quantize(torch.randn(4, 48), name="ff.weight")


def test_weights_whose_scale_overflows_fp16_are_rejected_naming_the_tensor_and_the_row():
    w = torch.zeros(4, 64)
    w[3, 40] = 1e7
    with pytest.raises(WeightRangeError, match=r"to_q\.weight: q8_0 .* index \[3, 32\] \(row 3\) .* overflows fp16"):
        q8_0.quantize(w, name="to_q.weight")


def test_the_scale_overflow_error_gives_the_block_s_peak_and_the_largest_peak_q8_0_can_store():
    """The message says how far out of range the block is: its max|w| (not one weight of it) against the limit
    65520 * 127 from which fp16 ``d`` overflows, how many blocks overflow, and what to do about it."""
    w = torch.zeros(4, 64)
    w[3, 40], w[3, 33], w[1, 0] = 1e7, 5.0, -2e7
    with pytest.raises(WeightRangeError) as error:
        q8_0.quantize(w, name="to_q.weight")
    assert "index [1, 0] (row 1) has max|w| = 2e+07," in str(error.value)
    assert str(error.value).endswith(
        "below about 8.321e+06); 2 block(s) affected. Keep this tensor in higher precision."
    )
    w[1, 0] = 0.0
    with pytest.raises(WeightRangeError, match=r"has max\|w\| = 1e\+07, .* 1 block\(s\) affected"):
        q8_0.quantize(w)


def test_scales_that_round_down_to_the_largest_fp16_still_encode_like_gguf_py():
    # max|w| / 127 = 65510 lies between fp16's largest finite value (65504) and the Inf threshold (65520).
    w = torch.zeros(1, 32)
    w[0, 0], w[0, 1] = 65510.0 * 127, -3e6
    assert np.array_equal(q8_0.quantize(w).data.numpy(), gguf_bytes(w))


def test_whole_reference_tensor_matches_gguf_py(reference_weights):
    assert np.array_equal(q8_0.quantize(reference_weights).data.numpy(), gguf_bytes(reference_weights))


def test_chunked_cpu_path_matches_gguf_py_across_chunk_boundaries():
    w = torch.randn((q8_0.CPU_CHUNK_BLOCKS + 2) * 32).reshape(-1, 64)
    assert np.array_equal(q8_0.quantize(w).data.numpy(), gguf_bytes(w))


@pytest.mark.gpu
def test_cuda_bytes_match_cpu_bytes():
    w = torch.randn(256, 4096)
    assert torch.equal(q8_0.quantize(w.cuda()).data.cpu(), q8_0.quantize(w).data)
