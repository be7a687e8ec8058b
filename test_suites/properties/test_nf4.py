"""NF4: bytes, absmax and nested state identical to bitsandbytes 0.50.2 on CPU; the properties the format has."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantkit.codecs import nf4
from quantkit.errors import FormatError
from test_suites.oracles import bitsandbytes_kernels as bnb_kernels
from test_suites.oracles import nf4_reference


@pytest.fixture(scope="session")
def bnb():
    """bitsandbytes.functional, imported once (the import takes seconds)."""
    return pytest.importorskip("bitsandbytes.functional")


def weights(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * torch.rand(shape[0], *([1] * (len(shape) - 1)), generator=g) * 0.05
    w[torch.rand(shape, generator=g) < 0.03] = 0.0
    return w.to(dtype)


shapes = st.one_of(
    st.tuples(st.integers(1, 2000)),
    st.tuples(st.integers(1, 40), st.integers(1, 300)),
    st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 50)),
)
seeds = st.integers(0, 2**31 - 1)
blocksizes = st.sampled_from(nf4.BLOCKSIZES)
dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])


@settings(max_examples=40)
@given(shapes, seeds, blocksizes, dtypes, st.booleans())
def test_packed_bytes_absmax_and_nested_state_match_bitsandbytes(bnb, shape, seed, blocksize, dtype, double_quant):
    w = weights(shape, seed, dtype)
    data, state = bnb.quantize_4bit(w, blocksize=blocksize, compress_statistics=double_quant, quant_type="nf4")
    packed = nf4.quantize(w, blocksize=blocksize, double_quant=double_quant)
    assert torch.equal(packed.data, data)
    assert torch.equal(packed.scale, state.absmax)
    if double_quant:
        assert torch.equal(packed.extra["nested_absmax"], state.state2.absmax)
        assert torch.equal(packed.extra["nested_offset"], state.offset)
        assert torch.equal(nf4.dynamic_code(), state.state2.code)
    else:
        assert "nested_absmax" not in packed.extra


# Fixed cases, not Hypothesis: a kernel's behaviour is a property of the machine, and a replayed example database
# must not turn one machine's finding into a verdict on the code. Rows of whole blocks, rows that are not (the
# AVX-512 kernel's wrong-scale layouts), a partial last block, an odd row length (the torch fallback), and a
# blocksize of 2048 (the fallback on AVX-512).
KERNEL_CASES = [
    ((48, 256), 64, False),
    ((40, 256), 32, True),
    ((4, 4096), 2048, False),
    ((256, 416), 64, True),
    ((33, 62), 32, False),
    ((12, 96), 64, False),
    ((7, 51), 64, False),
]


@pytest.mark.parametrize(("shape", "blocksize", "double_quant"), KERNEL_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dequantize_is_the_reference_and_bitsandbytes_kernel_is_within_its_own_tolerance(
    bnb, record_property, shape, blocksize, double_quant, dtype
):
    w = weights(shape, seed=sum(shape) + blocksize)
    data, state = bnb.quantize_4bit(w, blocksize=blocksize, compress_statistics=double_quant, quant_type="nf4")
    packed = nf4.quantize(w, blocksize=blocksize, double_quant=double_quant)
    assert torch.equal(packed.data, data)  # integer codes: bit-exact on every machine
    reference = nf4_reference.decode_state(data, state, dtype)
    assert torch.equal(nf4.dequantize(packed, dtype), reference)  # ours: the documented reference, bit for bit
    state.dtype = dtype
    with bnb_kernels.dequantize_4bit_path(shape, blocksize, dtype) as path:
        theirs = bnb.dequantize_4bit(data, state)
    assert theirs.shape == shape and theirs.dtype == dtype
    result = bnb_kernels.compare(w, theirs, reference, blocksize, path[0])
    record_property("bitsandbytes_dequantize_4bit", result.summary())
    assert result.accepted, f"beyond what bitsandbytes' own tests accept: {result.summary()}"


def test_codebooks_are_bitsandbytes_own(bnb):
    assert torch.equal(nf4.nf4_code(), bnb.get_4bit_type("nf4", device="cpu"))
    assert torch.equal(nf4.dynamic_code(), bnb.create_dynamic_map())


def test_a_value_exactly_between_two_codes_takes_the_lower_index_as_bitsandbytes_does(bnb):
    code = nf4.nf4_code()
    midpoints = (code[:-1] + code[1:]) / 2
    w = torch.cat([torch.tensor([1.0]), midpoints, -midpoints, torch.zeros(64 - 31)])
    packed = nf4.quantize(w)
    assert torch.equal(packed.data, bnb.quantize_4bit(w, blocksize=64, quant_type="nf4")[0])
    indices = torch.stack([packed.data.view(-1) >> 4, packed.data.view(-1) & 15], 1).view(-1)
    assert indices[1:16].tolist() == list(range(15))


def test_nested_quantization_over_many_blocks_matches_bitsandbytes_table_lookup(bnb):
    # 32768 absmax values in 128 nested blocks: exercises bnb's 65536-entry lookup table, not a nearest search.
    w = weights((2048, 1024), seed=7) * torch.rand(2048, 1).pow(3)
    _, state = bnb.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    packed = nf4.quantize(w, double_quant=True)
    assert torch.equal(packed.scale, state.absmax)
    assert torch.equal(packed.extra["nested_absmax"], state.state2.absmax)


@given(shapes, seeds, blocksizes)
def test_error_is_at_most_half_the_widest_codebook_gap_times_the_block_absmax(shape, seed, blocksize):
    w = weights(shape, seed)
    packed = nf4.quantize(w, blocksize=blocksize)
    half_gap = float(nf4.nf4_code().diff().max() / 2)
    bound = packed.scale.repeat_interleave(blocksize)[: w.numel()] * (half_gap + 1e-6)
    assert bool(((nf4.dequantize(packed) - w).abs().reshape(-1) <= bound).all())


@given(shapes, seeds, blocksizes)
def test_requantizing_the_dequantized_tensor_gives_the_same_codes_and_absmax(shape, seed, blocksize):
    # Holds without double quantization; with it the offset (a mean) moves and the nested codes can change.
    packed = nf4.quantize(weights(shape, seed), blocksize=blocksize)
    again = nf4.quantize(nf4.dequantize(packed), blocksize=blocksize)
    assert torch.equal(again.data, packed.data)
    assert torch.equal(again.scale, packed.scale)


@given(shapes, seeds, st.integers(0, 10_000))
def test_changing_one_block_leaves_every_other_block_unchanged(shape, seed, where):
    w = weights(shape, seed).reshape(-1)
    before = nf4.quantize(w, blocksize=64)
    block = (where % w.numel()) // 64
    w[block * 64 : (block + 1) * 64] *= 3.0
    after = nf4.quantize(w, blocksize=64)
    others = torch.arange(before.scale.numel()) != block
    assert torch.equal(before.scale[others], after.scale[others])
    codes = lambda p: torch.stack([p.data.view(-1) >> 4, p.data.view(-1) & 15], 1).view(-1)[: w.numel()]  # noqa: E731
    same = others.repeat_interleave(64)[: w.numel()]
    assert torch.equal(codes(before)[same], codes(after)[same])


@pytest.mark.parametrize("double_quant", [False, True])
def test_zeros_stay_exact_zeros(double_quant):
    w = torch.zeros(5, 100)
    w[1, 3:40] = torch.linspace(-1, 1, 37)
    out = nf4.dequantize(nf4.quantize(w, double_quant=double_quant))
    assert torch.equal(out[w == 0], torch.zeros(int((w == 0).sum())))


def test_sign_symmetry_does_not_hold_because_the_codebook_is_asymmetric():
    # 7 negative levels, 0, and 8 positive ones: -w does not quantize to -q(w).
    w = torch.tensor([1.0, 0.62] + [0.0] * 62)
    assert not torch.equal(nf4.dequantize(nf4.quantize(-w)), -nf4.dequantize(nf4.quantize(w)))


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 65), (4, 1, 3, 3)])
@pytest.mark.parametrize("double_quant", [False, True])
def test_any_accepted_shape_round_trips_to_its_shape(shape, double_quant):
    packed = nf4.quantize(torch.randn(shape), double_quant=double_quant)
    assert packed.data.shape == ((torch.Size(shape).numel() + 1) // 2, 1)
    assert nf4.dequantize(packed, torch.bfloat16).shape == shape


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_rejected(bad):
    w = torch.randn(4, 64)
    w[1, 1] = bad
    with pytest.raises(FormatError, match="NaN or Inf"):
        nf4.quantize(w)


@pytest.mark.parametrize("blocksize", [16, 100, 8192])
def test_unsupported_blocksizes_are_rejected(blocksize):
    with pytest.raises(FormatError, match="blocksize"):
        nf4.quantize(torch.randn(128), blocksize=blocksize)
