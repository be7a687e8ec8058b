"""Streaming quantization writes, byte for byte, what quantizing in memory and saving with the libraries writes."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import safetensors.torch
import torch

from quantkit.codecs import dequantize, quantize
from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError, FormatError
from quantkit.io.gguf import PACKED_TYPES, write_gguf
from quantkit.io.safetensors import load_packed, save_packed
from quantkit.io.streaming import is_linear_weight, stream_quantize


def synthetic_checkpoint(folder, *, shards=2, seed=0):
    """A sharded checkpoint with the tensor kinds a transformer has: bf16/f32 linears, norms, an embedding, biases."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        "layers.0.attention.to_q.weight": torch.randn(96, 64, generator=gen).to(torch.bfloat16),
        "layers.0.feed_forward.w2.weight": torch.randn(64, 256, generator=gen) * 0.02,
        "layers.0.adaln_modulation.weight": torch.randn(40, 32, generator=gen).to(torch.bfloat16),
        "layers.0.adaln_modulation.bias": torch.randn(40, generator=gen).to(torch.bfloat16),
        "layers.0.attention_norm1.weight": torch.rand(64, generator=gen).to(torch.bfloat16),
        "embed_image_indicator.weight": torch.randn(2, 64, generator=gen).to(torch.bfloat16),
        "input_proj.weight": torch.randn(64, 16, generator=gen),
        "odd.weight": torch.randn(5, 48, generator=gen).to(torch.float16),
    }
    tensors["layers.0.feed_forward.w2.weight"][3, 7] = 9.0  # an outlier row scale
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: tensors[k] for k in names[i::shards]}
        safetensors.torch.save_file(part, folder / file)
        weight_map.update(dict.fromkeys(part, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return tensors


METADATA = {"quantkit.recipe": '{"name": "int8_w8a8"}'}


def in_memory_safetensors(tensors, fmt, path):
    """The in-memory path: quantize everything, then ``save_packed``."""
    quantized = {
        name: quantize(value, fmt, name=name) if is_linear_weight(name, tuple(value.shape)) else value
        for name, value in tensors.items()
    }
    save_packed(path, quantized, METADATA)
    return path.read_bytes()


def in_memory_gguf(tensors, order, fmt, path):
    """The in-memory path: quantize everything (whole blocks only), then ``write_gguf`` in source order."""
    block = PACKED_TYPES[fmt][1]
    quantized = {}
    for name in order:
        value = tensors[name]
        selected = is_linear_weight(name, tuple(value.shape)) and value.shape[-1] % block == 0
        quantized[name] = quantize(value, fmt, name=name) if selected else value
    write_gguf(path, quantized, METADATA)
    return path.read_bytes()


@pytest.mark.parametrize("fmt", ["int8", "fp8_e4m3"])
@pytest.mark.parametrize("chunk_bytes", [1024, 64 * 1024 * 1024])
def test_streamed_safetensors_equal_in_memory_quantization_byte_for_byte(tmp_path, fmt, chunk_bytes):
    tensors = synthetic_checkpoint(tmp_path)
    result = stream_quantize(tmp_path, tmp_path / "out.safetensors", fmt, metadata=METADATA, chunk_bytes=chunk_bytes)
    expected = in_memory_safetensors(tensors, fmt, tmp_path / "reference.safetensors")
    assert (tmp_path / "out.safetensors").read_bytes() == expected
    loaded, metadata = load_packed(tmp_path / "out.safetensors")
    assert metadata == METADATA and loaded["layers.0.feed_forward.w2.weight"].fmt == fmt
    assert "layers.0.feed_forward.w2.weight" in result.quantized
    assert "embed_image_indicator.weight" in result.kept and "layers.0.attention_norm1.weight" in result.kept


def test_streamed_int8_decodes_to_the_codec_result(tmp_path):
    tensors = synthetic_checkpoint(tmp_path, shards=1)
    stream_quantize(tmp_path, tmp_path / "out.safetensors", "int8", chunk_bytes=512)
    loaded = safetensors.torch.load_file(tmp_path / "out.safetensors")
    name = "layers.0.attention.to_q.weight"
    expected = dequantize(quantize(tensors[name], "int8"))
    packed = Packed("int8", tuple(loaded[name].shape), loaded[name], loaded[f"{name}_scale"])
    assert torch.equal(dequantize(packed), expected)


@pytest.mark.parametrize("fmt", ["q8_0", "q4_k"])
@pytest.mark.parametrize("chunk_bytes", [2048, 64 * 1024 * 1024])
def test_streamed_gguf_equals_write_gguf_output_byte_for_byte(tmp_path, fmt, chunk_bytes):
    tensors = synthetic_checkpoint(tmp_path)
    order = [
        name
        for file in sorted(tmp_path.glob("model-*.safetensors"))
        for name in safetensors.torch.load_file(file)  # shard order, then each file's own order
    ]
    result = stream_quantize(tmp_path, tmp_path / "out.gguf", fmt, metadata=METADATA, chunk_bytes=chunk_bytes)
    expected = in_memory_gguf(tensors, order, fmt, tmp_path / "reference.gguf")
    assert (tmp_path / "out.gguf").read_bytes() == expected
    assert "odd.weight" in result.kept  # rows of 48 are not whole Q8_0 / Q4_K blocks: kept as stored
    reader = gguf.GGUFReader(tmp_path / "out.gguf")
    w2 = next(t for t in reader.tensors if t.name == "layers.0.feed_forward.w2.weight")
    assert w2.tensor_type == PACKED_TYPES[fmt][0]
    decoded = gguf.quants.dequantize(np.asarray(w2.data), w2.tensor_type)
    source = tensors["layers.0.feed_forward.w2.weight"]
    np.testing.assert_array_equal(decoded, dequantize(quantize(source, fmt)).numpy())


def test_a_truncated_source_is_a_clear_error(tmp_path):
    synthetic_checkpoint(tmp_path, shards=1)
    shard = next(tmp_path.glob("model-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-64])
    with pytest.raises(CheckpointError, match="truncated"):
        stream_quantize(tmp_path, tmp_path / "out.safetensors", "int8")
    assert not (tmp_path / "out.safetensors").exists()


def test_unsupported_targets_are_rejected(tmp_path):
    synthetic_checkpoint(tmp_path, shards=1)
    with pytest.raises(FormatError, match="q8_0"):
        stream_quantize(tmp_path, tmp_path / "out.safetensors", "q8_0")
    with pytest.raises(FormatError, match=r"\.bin"):
        stream_quantize(tmp_path, tmp_path / "out.bin", "int8")
    with pytest.raises(FormatError, match="int8"):
        stream_quantize(tmp_path, tmp_path / "out.gguf", "int8")
