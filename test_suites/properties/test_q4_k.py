"""GGUF Q4_K: bytes identical to ggml's reference quantizer, decoding identical to gguf-py and diffusers."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quantkit.codecs import Packed, dequantize, q4_k, quantize
from quantkit.codecs import _q4_k_kernel as kernel
from quantkit.errors import FormatError, WeightRangeError
from test_suites.oracles import q4_k_reference as oracle


def _block(kind: str, seed: int, exponent: int) -> np.ndarray:
    """One 256-weight super-block of a named shape; ``exponent`` sets its magnitude (10**exponent)."""
    rng = np.random.default_rng(seed)
    scale = 10.0**exponent
    if kind == "gaussian":
        x = rng.normal(0.0, scale, 256)
    elif kind == "outliers":
        x = rng.normal(0.0, scale, 256)
        x[rng.integers(0, 256, 3)] *= 300.0
    elif kind == "constant":
        x = np.full(256, rng.normal(0.0, scale))
    elif kind == "one_signed":
        x = np.abs(rng.normal(0.0, scale, 256)) * rng.choice([-1.0, 1.0])
    elif kind == "grid_ties":  # values on a coarse grid, so many products land exactly on .5
        x = rng.integers(-8, 8, 256) * scale
    elif kind == "flat_sub_blocks":  # some sub-blocks constant, some zero
        x = np.repeat(rng.normal(0.0, scale, 8), 32) * (rng.random(256) < 0.9)
    elif kind == "sparse":
        x = rng.normal(0.0, scale, 256) * (rng.random(256) < 0.2)
    else:  # "wide": every magnitude at once
        x = rng.normal(0.0, 1.0, 256) * 10.0 ** rng.integers(-45, 38, 256)
    with np.errstate(over="ignore"):
        return np.clip(x, -3.4e38, 3.4e38).astype(np.float32)


_KINDS = ["gaussian", "outliers", "constant", "one_signed", "grid_ties", "flat_sub_blocks", "sparse", "wide"]

structured_blocks = st.builds(
    _block, st.sampled_from(_KINDS), st.integers(0, 2**32 - 1), st.integers(-44, 37)
)  # exponent range spans subnormals to fp16 overflow of d
raw_blocks = hnp.arrays(np.float32, 256, elements=st.floats(width=32, allow_nan=False, allow_infinity=False))

ADVERSARIAL = {
    "all_zero": np.zeros(256, np.float32),
    "negative_zeros": np.where(np.arange(256) % 3 == 0, -0.0, 0.0).astype(np.float32),
    "constant_positive": np.full(256, 0.37, np.float32),
    "constant_negative": np.full(256, -0.37, np.float32),
    "float32_extremes": np.resize(np.array([3.4e38, -3.4e38, 1.0, -1e-45, 0.0], np.float32), 256),
    "subnormals": (np.arange(256, dtype=np.float32) - 128) * np.float32(1e-43),
    "d_overflows_fp16": np.linspace(-1e8, 1e8, 256, dtype=np.float32),
    "exact_ties": (np.arange(256) % 16 - 3).astype(np.float32) * np.float32(0.125),
    "one_outlier": np.where(np.arange(256) == 77, 50.0, 0.01 * np.sin(np.arange(256))).astype(np.float32),
}


def _oracle_bytes(blocks: np.ndarray) -> np.ndarray:
    return oracle.quantize(blocks.reshape(-1, 256)).reshape(-1, 144)


def _our_bytes(blocks: np.ndarray) -> np.ndarray:
    return quantize(torch.from_numpy(blocks.reshape(-1, 256)), "q4_k").data.reshape(-1, 144).numpy()


def _reference_decodes_finite(block: np.ndarray) -> bool:
    """ggml encodes every finite block, but where its fp16 ``d`` or ``dmin`` overflows the block decodes to
    Inf/NaN: such a block is not representable in Q4_K, and quantkit refuses it instead."""
    with np.errstate(all="ignore"):
        return bool(np.isfinite(oracle.dequantize(_oracle_bytes(block))).all())


def assert_encodes_like_the_reference(block: np.ndarray) -> None:
    if _reference_decodes_finite(block):
        assert np.array_equal(_our_bytes(block), _oracle_bytes(block))
    else:
        with pytest.raises(WeightRangeError, match=r"row 0.*overflows"):
            _our_bytes(block)


@pytest.fixture(scope="session")
def gaussian() -> torch.Tensor:
    return torch.randn(64, 4096, generator=torch.Generator().manual_seed(0)) * 0.02


@pytest.fixture(scope="session")
def gaussian_packed(gaussian: torch.Tensor) -> Packed:
    return quantize(gaussian, "q4_k")


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_blocks_encode_to_the_reference_bytes_or_are_refused_as_unrepresentable(name):
    assert_encodes_like_the_reference(ADVERSARIAL[name])


@settings(max_examples=25)
@given(st.one_of(structured_blocks, raw_blocks))
def test_any_finite_block_encodes_to_the_reference_bytes_or_is_refused_as_unrepresentable(block):
    assert_encodes_like_the_reference(block)


@pytest.mark.parametrize(("low", "high"), [(-5e6, 1.0), (0.0, 7e7), (-1e30, 1e30)])
def test_weights_whose_scales_overflow_fp16_name_the_tensor_and_the_row(low, high):
    w = torch.zeros(3, 512)
    w[2, 300], w[2, 301] = low, high  # row 2, second super-block
    with pytest.raises(WeightRangeError, match=r"blocks\.1\.ff\.weight: q4_k .* index \[2, 256\] \(row 2\)"):
        quantize(w, "q4_k", name="blocks.1.ff.weight")


def test_the_largest_representable_weights_still_encode_to_the_reference_bytes():
    w = np.linspace(-4e6, 4e6, 256, dtype=np.float32)  # d and dmin just below fp16's largest finite value
    assert _reference_decodes_finite(w)
    assert np.array_equal(_our_bytes(w), _oracle_bytes(w))


def test_gaussian_rows_encode_to_the_reference_bytes(gaussian, gaussian_packed):
    rows = gaussian[:1, :2048].numpy()
    assert np.array_equal(gaussian_packed.data[:1, : 8 * 144].numpy(), oracle.quantize(rows))


_NEAREST_INT_CASES = np.array(
    [0.5, 1.5, -2.5, 4194303.0, 4194304.5, 5e6, -7e6, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32
)


def _expected_nearest_int() -> list[int]:
    with np.errstate(all="ignore"):
        return [oracle.nearest_int(v) for v in _NEAREST_INT_CASES]


def test_nearest_int_keeps_ggml_wraparound_outside_its_range():
    assert q4_k.nearest_int(torch.from_numpy(_NEAREST_INT_CASES)).tolist() == _expected_nearest_int()


def test_the_kernel_nearest_int_keeps_ggml_wraparound_outside_its_range():
    assert [int(kernel.nearest_int(v)) for v in _NEAREST_INT_CASES] == _expected_nearest_int()


def _varied_blocks(count: int, seed: int) -> np.ndarray:
    """``count`` super-blocks of every kind and magnitude, the adversarial ones first."""
    rng = np.random.default_rng(seed)
    made = [_block(_KINDS[i % len(_KINDS)], seed + i, int(rng.integers(-44, 38))) for i in range(count)]
    return np.concatenate([np.stack(list(ADVERSARIAL.values())), np.stack(made)])


def test_the_compiled_cpu_path_gives_the_eager_torch_bytes():
    """300 blocks of every kind and magnitude: 2432 sub-blocks, so the kernel's last tile of 64 is partial."""
    blocks = torch.from_numpy(_varied_blocks(295, seed=7))
    assert torch.equal(q4_k._quantize_blocks_fused(blocks), q4_k._quantize_blocks_eager(blocks))


@settings(max_examples=10)
@given(hnp.arrays(np.float32, (3, 256), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_the_compiled_cpu_path_gives_the_eager_torch_bytes_on_any_floats(blocks):
    blocks = torch.from_numpy(blocks)
    assert torch.equal(q4_k._quantize_blocks_fused(blocks), q4_k._quantize_blocks_eager(blocks))


def test_without_numba_the_eager_path_encodes_the_same_bytes(gaussian, gaussian_packed, monkeypatch):
    monkeypatch.setattr(q4_k, "_kernel", None)
    assert torch.equal(quantize(gaussian[:2], "q4_k").data, gaussian_packed.data[:2])


def test_a_gaussian_matrix_encodes_to_the_eager_torch_bytes():
    w = torch.randn(1024, 4096, generator=torch.Generator().manual_seed(3)) * 0.02
    blocks = w.reshape(-1, 256)
    assert torch.equal(q4_k._quantize_blocks_fused(blocks), q4_k._quantize_blocks_eager(blocks))


def test_layout_is_gguf_q4_k(gaussian, gaussian_packed):
    assert gaussian_packed.fmt == "q4_k"
    assert gaussian_packed.shape == (64, 4096)
    assert gaussian_packed.data.dtype == torch.uint8
    assert tuple(gaussian_packed.data.shape) == (64, 4096 // 256 * 144)
    assert gaussian_packed.bits_per_weight == 4.5


# Exact equality with gguf-py's and diffusers' float decoders holds on every machine, whatever their kernels do:
# d * scale (11 + 6 bits), times a 4-bit level (21 bits) and dmin * min are exact in float32; the one subtraction is
# correctly rounded everywhere (fused or not, since the product is exact).
def test_gguf_py_decodes_to_the_same_values(gaussian_packed):
    ours = dequantize(gaussian_packed)
    theirs = gguf.quants.dequantize(gaussian_packed.data.numpy(), gguf.GGMLQuantizationType.Q4_K)
    assert np.array_equal(ours.numpy(), theirs)


def test_diffusers_decodes_to_the_same_values(gaussian_packed):
    from diffusers.quantizers.gguf.utils import dequantize_blocks_Q4_K

    blocks = gaussian_packed.data.reshape(-1, 144)
    theirs = dequantize_blocks_Q4_K(blocks, 256, 144, dtype=torch.float32).reshape(gaussian_packed.shape)
    assert torch.equal(dequantize(gaussian_packed), theirs)


@pytest.mark.parametrize("name", ["all_zero", "float32_extremes", "subnormals", "d_overflows_fp16"])
def test_decoding_matches_the_c_dequantizer_port(name):
    data = torch.from_numpy(_oracle_bytes(ADVERSARIAL[name]))
    ours = q4_k.dequantize(Packed("q4_k", (256,), data)).numpy()
    assert np.array_equal(ours, oracle.dequantize(data.numpy())[0], equal_nan=True)


def test_zeros_encode_to_zero_bytes_and_decode_to_positive_zeros():
    packed = quantize(torch.zeros(3, 512), "q4_k")
    assert not packed.data.any()
    decoded = dequantize(packed)
    assert torch.equal(decoded, torch.zeros(3, 512))
    assert not torch.signbit(decoded).any()


@settings(max_examples=20)
@given(st.integers(0, 2**32 - 1), st.integers(0, 7))
def test_a_block_encodes_the_same_alone_or_among_others(seed, victim):
    kinds = [kind for kind in _KINDS if kind != "wide"]  # "wide" reaches magnitudes Q4_K cannot represent
    blocks = torch.from_numpy(np.stack([_block(kinds[(seed + i) % len(kinds)], seed + i, -2) for i in range(8)]))
    together = quantize(blocks.reshape(2, 1024), "q4_k").data.reshape(8, 144)
    alone = quantize(blocks[victim], "q4_k").data.reshape(144)
    assert torch.equal(together[victim], alone)
    changed = blocks.clone()
    changed[(victim + 1) % 8] *= -3.0
    others = [i for i in range(8) if i != (victim + 1) % 8]
    assert torch.equal(quantize(changed, "q4_k").data[others], together[others])


@pytest.fixture
def two_cpu_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_chunked_threaded_encoding_equals_one_pass(gaussian, gaussian_packed, monkeypatch, two_cpu_threads):
    monkeypatch.setattr(q4_k, "_CHUNK_SUB_BLOCKS", 64)  # 8 super-blocks per chunk: 16 chunks, thread pool in use
    assert torch.equal(quantize(gaussian[:8], "q4_k").data, gaussian_packed.data[:8])
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_half_precision_inputs_encode_as_their_float32_values(gaussian, dtype):
    w = gaussian[:4].to(dtype)
    packed = quantize(w, "q4_k")
    assert torch.equal(packed.data, quantize(w.float(), "q4_k").data)
    assert np.array_equal(packed.data[:1, :144].numpy(), oracle.quantize(w[:1, :256].float().numpy()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_rejected_with_their_position(bad):
    w = torch.zeros(2, 256)
    w[1, 7] = bad
    with pytest.raises(FormatError, match=r"blocks\.0\.ff\.weight: q4_k cannot encode NaN or Inf.*\[1, 7\]"):
        quantize(w, "q4_k", name="blocks.0.ff.weight")


def test_rows_not_a_multiple_of_256_are_rejected_with_the_rule():
    with pytest.raises(FormatError, match=r"proj\.weight: q4_k packs rows in blocks of 256 .* 300 .* not a multiple"):
        quantize(torch.zeros(4, 300), "q4_k", name="proj.weight")


@settings(max_examples=25)
@given(st.lists(st.integers(1, 3), max_size=3), st.integers(1, 3))
def test_every_accepted_shape_round_trips_to_its_shape(lead, blocks_per_row):
    shape = (*lead, 256 * blocks_per_row)
    packed = quantize(torch.randn(shape), "q4_k")
    assert packed.shape == shape
    assert tuple(packed.data.shape) == (int(np.prod(lead)), 144 * blocks_per_row)
    assert dequantize(packed, torch.bfloat16).shape == shape
    assert dequantize(packed, torch.bfloat16).dtype == torch.bfloat16


def test_gaussian_weights_decode_within_the_error_band(gaussian, gaussian_packed):
    relative_l2 = (dequantize(gaussian_packed) - gaussian).norm() / gaussian.norm()
    assert relative_l2 < 0.09


def test_requantizing_decoded_weights_keeps_their_values_where_the_block_scales_repeat(gaussian):
    """Re-encoding decoded weights is not always byte-identical: the 21-candidate search can settle on other
    (d, dmin, scales) for a decoded block (about 7% of blocks when 0.1% of weights are 30x outliers). What holds is
    that the levels are a faithful inverse of decoding: wherever the 16 header bytes repeat, the values repeat."""
    w = gaussian.clone()
    w[torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) < 0.001] *= 30.0
    first = quantize(w, "q4_k")
    decoded = dequantize(first)
    second = quantize(decoded, "q4_k")
    same_header = (first.data.reshape(-1, 144)[:, :16] == second.data.reshape(-1, 144)[:, :16]).all(1)
    assert same_header.float().mean() > 0.8
    again = dequantize(second).reshape(-1, 256)
    assert torch.equal(again[same_header], decoded.reshape(-1, 256)[same_header])


@pytest.mark.gpu
def test_cuda_encoding_matches_cpu_bytes(gaussian, gaussian_packed):
    packed = quantize(gaussian.cuda(), "q4_k")
    assert packed.data.device.type == "cuda"
    assert torch.equal(packed.data.cpu(), gaussian_packed.data)
    assert torch.equal(dequantize(packed).cpu(), dequantize(gaussian_packed))


def test_on_cpu_the_compiled_kernel_does_the_encoding(gaussian, gaussian_packed, monkeypatch):
    """With numba present, CPU encoding runs the compiled kernels (the eager torch path is several times slower)."""

    def eager_not_expected(blocks: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the eager torch path ran on CPU")

    monkeypatch.setattr(q4_k, "_quantize_blocks_eager", eager_not_expected)
    assert torch.equal(quantize(gaussian, "q4_k").data, gaussian_packed.data)


def test_both_encoding_paths_return_uint8_bytes():
    """``_quantize_blocks`` returns the format's bytes as uint8 ``[n, 144]`` on either path, not wider integers."""
    blocks = torch.randn(3, 256, generator=torch.Generator().manual_seed(1))
    for path in (q4_k._quantize_blocks_fused, q4_k._quantize_blocks_eager):
        out = path(blocks)
        assert out.dtype == torch.uint8
        assert out.shape == (3, 144)
