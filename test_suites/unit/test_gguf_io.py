"""GGUF checkpoints: identical bytes after a round trip, readable by gguf-py, and loud failures on damaged files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from quantkit.codecs import Packed, q8_0
from quantkit.errors import CheckpointError
from quantkit.io.gguf import read_gguf, write_gguf

RECIPE = json.dumps({"name": "gguf-q8_0", "keep": ["proj_out"]})


@pytest.fixture(scope="session")
def tensors() -> dict[str, Packed | torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    q4_k_bytes = torch.randint(0, 256, (6, 2 * 144), dtype=torch.uint8, generator=g)  # 2 Q4_K blocks per row
    return {
        "blocks.0.attn.to_q.weight": q8_0.quantize(torch.randn(64, 128, generator=g)),
        "blocks.0.ff.down.weight": Packed("q4_k", (6, 512), q4_k_bytes),
        "conv.weight": q8_0.quantize(torch.randn(8, 2, 2, 32, generator=g)),
        "norm.weight": torch.randn(128, generator=g),
        "proj_out.weight": torch.randn(16, 128, generator=g).half(),
        "x_embedder.weight": torch.randn(4, 3, 5, generator=g).bfloat16(),
    }


@pytest.fixture
def written(tmp_path: Path, tensors) -> Path:
    path = tmp_path / "model.gguf"
    write_gguf(path, tensors, {"quantkit.recipe": RECIPE, "quantkit.version": 1, "ratio": 0.5, "smooth": True})
    return path


def assert_same(a: Packed | torch.Tensor, b: Packed | torch.Tensor) -> None:
    if isinstance(a, Packed):
        assert isinstance(b, Packed)
        assert (a.fmt, a.shape) == (b.fmt, b.shape)
        assert torch.equal(a.data, b.data)
    else:
        assert a.dtype == b.dtype
        assert torch.equal(a, b)


def test_round_trip_returns_identical_tensors_and_metadata(written, tensors):
    read, metadata = read_gguf(written)
    assert read.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert_same(tensor, read[name])
    assert metadata == {
        "general.architecture": "ideogram4",
        "quantkit.recipe": RECIPE,
        "quantkit.version": 1,
        "ratio": 0.5,
        "smooth": True,
    }


def test_file_holds_ggml_types_and_shapes_that_gguf_py_reads(written, tensors):
    reader = gguf.GGUFReader(written)
    by_name = {t.name: t for t in reader.tensors}
    expected_types = {
        "blocks.0.attn.to_q.weight": gguf.GGMLQuantizationType.Q8_0,
        "blocks.0.ff.down.weight": gguf.GGMLQuantizationType.Q4_K,
        "norm.weight": gguf.GGMLQuantizationType.F32,
        "proj_out.weight": gguf.GGMLQuantizationType.F16,
        "x_embedder.weight": gguf.GGMLQuantizationType.BF16,
    }
    for name, ggml_type in expected_types.items():
        assert by_name[name].tensor_type == ggml_type
        assert tuple(reversed(by_name[name].shape.tolist())) == tuple(tensors[name].shape)
    q = by_name["blocks.0.attn.to_q.weight"]
    decoded = gguf.quants.dequantize(np.asarray(q.data), gguf.GGMLQuantizationType.Q8_0)
    assert np.array_equal(decoded, q8_0.dequantize(tensors["blocks.0.attn.to_q.weight"]).numpy())


def corrupt(path: Path, edit) -> Path:
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data)))
    return path


def test_bad_magic_is_a_checkpoint_error_naming_the_file(written):
    corrupt(written, lambda b: b"XXXX" + b[4:])
    with pytest.raises(CheckpointError, match=r"model\.gguf.*not a readable GGUF"):
        read_gguf(written)


@pytest.mark.parametrize("keep", [0.99, 0.7, 0.3, 0.05])
def test_truncated_file_is_a_checkpoint_error(written, keep):
    corrupt(written, lambda b: b[: int(len(b) * keep)])
    with pytest.raises(CheckpointError, match=r"model\.gguf"):
        read_gguf(written)


def test_tensor_pointing_past_the_end_of_the_file_is_a_checkpoint_error(written):
    reader = gguf.GGUFReader(written)
    field = reader.tensors[-1].field
    offset_position = field.offset + sum(part.nbytes for part in field.parts[:-1])
    size = written.stat().st_size

    def move_offset(b: bytearray) -> bytearray:
        b[offset_position : offset_position + 8] = np.uint64(size).tobytes()
        return b

    corrupt(written, move_offset)
    with pytest.raises(CheckpointError, match=r"model\.gguf"):
        read_gguf(written)


def test_wrong_shape_for_the_ggml_type_is_a_checkpoint_error(written):
    # Make the Q8_0 tensor claim a row length of 100: not a whole number of 32-weight blocks.
    reader = gguf.GGUFReader(written)
    tensor = next(t for t in reader.tensors if t.name == "blocks.0.attn.to_q.weight")
    dims_part = tensor.field.parts[3]
    position = tensor.field.offset + sum(part.nbytes for part in tensor.field.parts[:3])
    assert dims_part.nbytes == 16

    def change_row_length(b: bytearray) -> bytearray:
        b[position : position + 8] = np.uint64(100).tobytes()
        return b

    corrupt(written, change_row_length)
    with pytest.raises(CheckpointError, match=r"model\.gguf"):
        read_gguf(written)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such GGUF file"):
        read_gguf(tmp_path / "absent.gguf")


def test_formats_gguf_cannot_hold_are_refused_before_anything_is_written(tmp_path, tensors):
    path = tmp_path / "model.gguf"
    write_gguf(path, tensors, {})
    before = path.read_bytes()
    nf4_like = Packed("nf4", (4, 4), torch.zeros(8, 1, dtype=torch.uint8), torch.ones(1))
    with pytest.raises(CheckpointError, match=r"nf4.*safetensors"):
        write_gguf(path, {**tensors, "bad": nf4_like}, {})
    with pytest.raises(CheckpointError, match="int32"):
        write_gguf(path, {"ids": torch.arange(3, dtype=torch.int32)}, {})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.gguf"]
