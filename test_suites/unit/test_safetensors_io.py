"""safetensors checkpoints: identical round trips, the published FP8 and bitsandbytes NF4 layouts, damaged files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch

from quantkit.codecs import Packed, dequantize, quantize
from quantkit.errors import CheckpointError
from quantkit.io.safetensors import load_packed, save_packed
from test_suites.oracles import bitsandbytes_kernels as bnb_kernels
from test_suites.oracles import nf4_reference

RECIPE = json.dumps({"name": "nf4", "double_quant": True})


@pytest.fixture(scope="session")
def tensors() -> dict[str, Packed | torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 130, generator=g) * 0.02
    return {
        "blocks.0.attn.to_q.weight": quantize(w, "fp8_e4m3"),
        "blocks.0.attn.to_k.weight": quantize(w, "int8"),
        "blocks.0.ff.up.weight": quantize(w, "nf4"),
        "blocks.0.ff.down.weight": quantize(w, "nf4", double_quant=True, blocksize=128),
        "blocks.0.ff.down.bias": torch.randn(48, generator=g).bfloat16(),
        "conv.weight": quantize(torch.randn(4, 3, 5, generator=g), "int8"),
    }


@pytest.fixture
def written(tmp_path: Path, tensors) -> Path:
    path = tmp_path / "model.safetensors"
    save_packed(path, tensors, {"quantkit.recipe": RECIPE})
    return path


def assert_same(a: Packed | torch.Tensor, b: Packed | torch.Tensor) -> None:
    if not isinstance(a, Packed):
        assert a.dtype == b.dtype and torch.equal(a, b)
        return
    assert (a.fmt, a.shape) == (b.fmt, b.shape)
    assert a.data.dtype == b.data.dtype and torch.equal(a.data.view(torch.uint8), b.data.view(torch.uint8))
    assert torch.equal(a.scale, b.scale)
    assert a.extra.keys() == b.extra.keys()
    assert all(torch.equal(a.extra[k], b.extra[k]) for k in a.extra)


def test_round_trip_returns_identical_tensors_and_metadata(written, tensors):
    read, metadata = load_packed(written)
    assert read.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert_same(tensor, read[name])
    assert metadata == {"quantkit.recipe": RECIPE}


def test_fp8_and_int8_use_the_published_weight_and_weight_scale_layout(written):
    flat = safetensors.torch.load_file(written)
    assert flat["blocks.0.attn.to_q.weight"].dtype == torch.float8_e4m3fn
    assert flat["blocks.0.attn.to_k.weight"].dtype == torch.int8
    assert flat["blocks.0.attn.to_q.weight_scale"].dtype == torch.float32
    assert flat["blocks.0.attn.to_q.weight_scale"].shape == (48,)
    assert flat["conv.weight"].shape == (4, 3, 5)


def test_a_published_fp8_file_with_a_per_tensor_scale_loads_as_per_row_scales(tmp_path):
    codes = torch.randn(6, 8).to(torch.float8_e4m3fn)
    safetensors.torch.save_file({"w.weight": codes, "w.weight_scale": torch.tensor(0.25)}, tmp_path / "fp8.safetensors")
    read, _ = load_packed(tmp_path / "fp8.safetensors")
    torch.testing.assert_close(dequantize(read["w.weight"]), codes.float() * 0.25, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["blocks.0.ff.up.weight", "blocks.0.ff.down.weight"])
def test_nf4_is_stored_as_bitsandbytes_params4bit_and_bitsandbytes_loads_it(written, tensors, name, record_property):
    bnb = pytest.importorskip("bitsandbytes")
    flat = safetensors.torch.load_file(written)
    stats = {k: v for k, v in flat.items() if k.startswith(f"{name}.")}
    assert f"{name}.quant_state.bitsandbytes__nf4" in stats
    param = bnb.nn.Params4bit.from_prequantized(data=flat[name], quantized_stats=stats, device="cpu")
    assert param.quant_state.dtype == torch.bfloat16  # the quant state records Ideogram 4's compute dtype
    # bitsandbytes' state decodes, exactly, to what the codec decodes; its CPU kernel is held to its own tests.
    reference = nf4_reference.decode_state(param.data, param.quant_state, torch.bfloat16)
    assert torch.equal(dequantize(tensors[name], torch.bfloat16), reference)
    shape, blocksize = tuple(param.quant_state.shape), param.quant_state.blocksize
    with bnb_kernels.dequantize_4bit_path(shape, blocksize, torch.bfloat16) as path:
        theirs = bnb.functional.dequantize_4bit(param.data, param.quant_state)
    result = bnb_kernels.compare(dequantize(tensors[name]), theirs, reference, blocksize, path[0])
    record_property("bitsandbytes_dequantize_4bit", result.summary())
    assert result.accepted, f"beyond what bitsandbytes' own tests accept: {result.summary()}"


def corrupt(path: Path, edit) -> Path:
    path.write_bytes(bytes(edit(bytearray(path.read_bytes()))))
    return path


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.01])
def test_truncated_file_is_a_checkpoint_error_naming_the_file(written, keep):
    corrupt(written, lambda b: b[: int(len(b) * keep)])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_packed(written)


def test_garbage_header_is_a_checkpoint_error(written):
    corrupt(written, lambda b: b[:8] + b"\x00" * 16 + b[24:])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_packed(written)


def test_nf4_tensors_that_do_not_fit_their_quant_state_are_a_checkpoint_error(tmp_path, written):
    flat = safetensors.torch.load_file(written)
    flat["blocks.0.ff.up.weight"] = flat["blocks.0.ff.up.weight"][:-5]
    safetensors.torch.save_file(flat, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*blocks\.0\.ff\.up\.weight.*packed bytes"):
        load_packed(tmp_path / "bad.safetensors")


def test_scale_of_the_wrong_length_is_a_checkpoint_error(tmp_path):
    codes = torch.zeros(6, 8, dtype=torch.int8)
    safetensors.torch.save_file({"w": codes, "w_scale": torch.ones(5)}, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="w_scale"):
        load_packed(tmp_path / "bad.safetensors")


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such safetensors file"):
        load_packed(tmp_path / "absent.safetensors")


def test_a_failed_write_leaves_the_old_file_and_no_temporary_behind(written, tensors):
    before = written.read_bytes()
    q8 = quantize(torch.randn(2, 32), "q8_0")
    with pytest.raises(CheckpointError, match="q8_0"):
        save_packed(written, {**tensors, "q": q8}, {})
    with pytest.raises(CheckpointError, match="metadata"):
        save_packed(written, tensors, {"version": 1})
    assert written.read_bytes() == before
    assert os.listdir(written.parent) == [written.name]
