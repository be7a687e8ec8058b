"""GGUF checkpoints through gguf-py: Q4_K / Q8_0 packed bytes, F32 / F16 / BF16 plain tensors, string KV metadata.

Packed GGUF tensors go to ``GGUFWriter`` as their uint8 bytes with ``raw_dtype`` set, so the file holds exactly the
codec's bytes (what llama.cpp, ComfyUI-GGUF and diffusers' GGUF loader read). Reading goes through ``GGUFReader``
and then checks every tensor against its type and shape, so a truncated or corrupted file raises
:class:`CheckpointError` naming the file and the problem instead of yielding garbage weights. Writes are atomic:
``GGUFWriter`` writes a temporary sibling which is then moved over the destination.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
import torch

from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError
from quantkit.io import replacing

GGMLType = gguf.GGMLQuantizationType

# Packed formats GGUF can hold: fmt -> (GGML type, weights per block, bytes per block).
PACKED_TYPES = {
    "q4_k": (gguf.GGMLQuantizationType.Q4_K, 256, 144),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, 32, 34),
}
FORMAT_OF_TYPE = {ggml_type: fmt for fmt, (ggml_type, _, _) in PACKED_TYPES.items()}
PLAIN_TYPES = {
    torch.float32: gguf.GGMLQuantizationType.F32,
    torch.float16: gguf.GGMLQuantizationType.F16,
    torch.bfloat16: gguf.GGMLQuantizationType.BF16,
}
DTYPE_OF_TYPE = {ggml_type: dtype for dtype, ggml_type in PLAIN_TYPES.items()}


def write_gguf(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Packed | torch.Tensor],
    metadata: Mapping[str, str | int | float | bool],
    *,
    arch: str = "ideogram4",
) -> None:
    """Write ``tensors`` and ``metadata`` (e.g. ``{"quantkit.recipe": recipe.to_json()}``) to ``path`` atomically."""
    target = Path(path)
    with replacing(target) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        for key, value in metadata.items():
            _add_metadata(writer, target, key, value)
        for name, tensor in tensors.items():
            array, raw_dtype = _to_gguf_array(target, name, tensor)
            writer.add_tensor(name, array, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def _add_metadata(writer: gguf.GGUFWriter, path: Path, key: str, value: object) -> None:
    if isinstance(value, bool):  # before int: bool is an int subclass
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_int64(key, value)
    elif isinstance(value, float):
        writer.add_float64(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        raise CheckpointError(f"{path}: metadata {key!r} must be str, int, float or bool, got {type(value).__name__}")


def _to_gguf_array(path: Path, name: str, tensor: Packed | torch.Tensor) -> tuple[np.ndarray, GGMLType]:
    if isinstance(tensor, Packed):
        if tensor.fmt not in PACKED_TYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} is {tensor.fmt}, which GGUF cannot hold (GGUF holds "
                f"{', '.join(PACKED_TYPES)}); save it with quantkit.io.safetensors.save_packed"
            )
        ggml_type, block, block_bytes = PACKED_TYPES[tensor.fmt]
        row_bytes = tensor.shape[-1] // block * block_bytes
        array = tensor.data.detach().cpu().contiguous().numpy().reshape(*tensor.shape[:-1], row_bytes)
        return array, ggml_type
    if tensor.dtype not in PLAIN_TYPES:
        raise CheckpointError(
            f"{path}: tensor {name!r} has dtype {tensor.dtype}; GGUF plain tensors must be float32, float16 or bfloat16"
        )
    plain = tensor.detach().cpu().contiguous()
    array = plain.view(torch.int16).numpy().view(np.uint16) if plain.dtype == torch.bfloat16 else plain.numpy()
    return array, PLAIN_TYPES[plain.dtype]


def read_gguf(path: str | os.PathLike[str]) -> tuple[dict[str, Packed | torch.Tensor], dict[str, object]]:
    """Read a GGUF file: packed Q4_K / Q8_0 tensors as :class:`Packed`, plain ones as tensors, KV metadata."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: no such GGUF file")
    try:
        reader = gguf.GGUFReader(source)
    except Exception as error:  # gguf-py raises ValueError, IndexError, struct and numpy errors on bad files
        raise CheckpointError(f"{source}: not a readable GGUF file ({type(error).__name__}: {error})") from error
    file_size = source.stat().st_size
    tensors = {t.name: _from_reader_tensor(source, file_size, t) for t in reader.tensors}
    metadata = {
        name: _field_value(source, field) for name, field in reader.fields.items() if not name.startswith("GGUF.")
    }
    return tensors, metadata


def _from_reader_tensor(path: Path, file_size: int, t: gguf.ReaderTensor) -> Packed | torch.Tensor:
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    if t.data_offset + t.n_bytes > file_size:
        raise CheckpointError(
            f"{path}: tensor {t.name!r} needs bytes {t.data_offset}..{t.data_offset + t.n_bytes} but the file has "
            f"{file_size}; the file is truncated"
        )
    raw = torch.from_numpy(np.array(t.data, copy=True).reshape(-1).view(np.uint8))
    if t.tensor_type in FORMAT_OF_TYPE:
        fmt = FORMAT_OF_TYPE[t.tensor_type]
        _, block, block_bytes = PACKED_TYPES[fmt]
        expected = _numel(shape) // block * block_bytes
        if shape[-1] % block or raw.numel() != expected:
            raise CheckpointError(
                f"{path}: tensor {t.name!r} of type {t.tensor_type.name} and shape {shape} has {raw.numel()} bytes; "
                f"expected rows of whole {block}-weight blocks ({expected} bytes)"
            )
        return Packed(fmt, shape, raw.reshape(-1, shape[-1] // block * block_bytes))
    if t.tensor_type in DTYPE_OF_TYPE:
        dtype = DTYPE_OF_TYPE[t.tensor_type]
        if raw.numel() != _numel(shape) * dtype.itemsize:
            raise CheckpointError(f"{path}: tensor {t.name!r} has {raw.numel()} bytes for shape {shape} {dtype}")
        return raw.view(dtype).reshape(shape)
    raise CheckpointError(
        f"{path}: tensor {t.name!r} has GGML type {t.tensor_type.name}, which quantkit does not read "
        f"(supported: Q4_K, Q8_0, F32, F16, BF16)"
    )


def _field_value(path: Path, field: gguf.ReaderField) -> object:
    try:
        value = field.contents()
    except Exception as error:
        raise CheckpointError(f"{path}: metadata {field.name!r} is corrupted ({error})") from error
    return value.item() if isinstance(value, np.generic) else value


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))
