"""Quantize a (sharded) safetensors checkpoint straight to an INT8/FP8 safetensors or a GGUF file, a few rows at a time.

A 9.3B-parameter transformer does not fit in memory twice, so nothing here holds a whole model, or even a whole
tensor: every format quantizes rows independently, so the source is read in row chunks with plain file reads (not
mmap, whose touched pages would count against the process), each chunk is quantized with the same codec the
in-memory path uses, and its bytes are written at their final offset. The output layout (safetensors header, GGUF
tensor infos) is computed from the source headers before any data is read, so the file equals, byte for byte,
what quantizing everything in memory and saving with ``quantkit.io.safetensors.save_packed`` /
``quantkit.io.gguf.write_gguf`` produces (safetensors orders several metadata keys by a randomly seeded hash, so
byte equality holds for at most one metadata key, e.g. the recipe JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import gguf
import numpy as np
import torch

from quantkit.atomic import atomic_open
from quantkit.codecs import quantize
from quantkit.errors import CheckpointError, FormatError
from quantkit.io import replacing
from quantkit.io.gguf import PACKED_TYPES, PLAIN_TYPES, _add_metadata

CHUNK_BYTES = 64 * 1024 * 1024  # float32 bytes of one row chunk being quantized
SAFETENSORS_FORMATS = {"int8": "I8", "fp8_e4m3": "F8_E4M3"}  # per-row formats: codes + float32 row scale
GGUF_ARCH = "ideogram4"

# safetensors' own serialisation order: descending dtype rank (its ``Dtype`` enum), then name.
_DTYPE_RANK = [
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
    "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
]  # fmt: skip
_TORCH_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3": torch.float8_e4m3fn, "I16": torch.int16, "U16": torch.uint16, "F16": torch.float16,
    "BF16": torch.bfloat16, "I32": torch.int32, "U32": torch.uint32, "F32": torch.float32, "F64": torch.float64,
    "I64": torch.int64, "U64": torch.uint64,
}  # fmt: skip

Select = Callable[[str, tuple[int, ...]], bool]


def is_linear_weight(name: str, shape: tuple[int, ...]) -> bool:
    """The default selection: 2-D ``*.weight`` tensors that are not embeddings."""
    return len(shape) == 2 and name.endswith(".weight") and "embed" not in name


# -- reading ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourceTensor:
    """Where one tensor's bytes are in a safetensors file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset in ``file``
    nbytes: int

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def shape_row_numel(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def row_bytes(self) -> int:
        return self.nbytes // self.rows if self.rows else 0


def source_tensors(src: str | os.PathLike[str]) -> list[SourceTensor]:
    """Every tensor of a safetensors file, or of a folder with one or an index of shards, from the headers only."""
    tensors: dict[str, SourceTensor] = {}
    for file in _source_files(Path(src)):
        for tensor in _read_header(file):
            if tensor.name in tensors:
                raise CheckpointError(f"{file}: tensor {tensor.name!r} also appears in {tensors[tensor.name].file}")
            tensors[tensor.name] = tensor
    return list(tensors.values())


def read_rows(handle: BinaryIO, tensor: SourceTensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``[start, stop)`` of ``tensor`` as a fresh torch tensor (one ``readinto``, no mmap)."""
    buffer = bytearray((stop - start) * tensor.row_bytes)
    handle.seek(tensor.start + start * tensor.row_bytes)
    if handle.readinto(buffer) != len(buffer):
        raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} is truncated; re-download the checkpoint")
    flat = torch.frombuffer(buffer, dtype=torch.uint8) if buffer else torch.empty(0, dtype=torch.uint8)
    return flat.view(_torch_dtype(tensor)).reshape(stop - start, *tensor.shape[1:])


def _source_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    index = path / "diffusion_pytorch_model.safetensors.index.json"
    indexes = [index] if index.is_file() else sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text())["weight_map"]
        return [path / name for name in sorted(set(weight_map.values()))]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no .safetensors file or index; point at a checkpoint file or folder")
    return files


def _read_header(file: Path) -> Iterator[SourceTensor]:
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else size
        if length > size - 8:
            raise CheckpointError(f"{file}: truncated safetensors header; re-download the checkpoint")
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:
            raise CheckpointError(f"{file}: corrupted safetensors header ({exc})") from exc
    header.pop("__metadata__", None)
    base = 8 + length
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if base + end > size:
            raise CheckpointError(f"{file}: tensor {name!r} runs past the end of the file; the file is truncated")
        yield SourceTensor(name, info["dtype"], tuple(info["shape"]), file, base + begin, end - begin)


def _torch_dtype(tensor: SourceTensor) -> torch.dtype:
    if tensor.dtype not in _TORCH_DTYPES:
        raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} has unsupported dtype {tensor.dtype}")
    return _TORCH_DTYPES[tensor.dtype]


# -- the output plan: one piece per output tensor, each filled by row chunks ----------------------------------------


@dataclasses.dataclass(frozen=True)
class Piece:
    """One output tensor: its name, dtype and shape in the file, and the source rows it is made from."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    source: SourceTensor
    kind: str  # "copy" | "codes" | "scale" | "gguf" | "f16"


@dataclasses.dataclass(frozen=True)
class StreamResult:
    path: Path
    quantized: tuple[str, ...]
    kept: tuple[str, ...]
    source_bytes: int
    output_bytes: int


def stream_quantize(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    fmt: str,
    *,
    select: Select = is_linear_weight,
    metadata: dict[str, str] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> StreamResult:
    """Quantize the tensors ``select`` picks to ``fmt``; ``dst``'s suffix picks the container.

    ``.safetensors``: ``int8`` / ``fp8_e4m3`` codes under the tensor's name plus ``<name>_scale`` (float32 per row),
    as ``save_packed`` writes them. ``.gguf``: ``q8_0`` / ``q4_k`` blocks, as ``write_gguf`` writes them. Other
    tensors (and, for GGUF, rows the block size does not divide) keep their dtype. ``metadata`` goes in the header
    (string values for safetensors; str/int/float/bool KV pairs for GGUF).
    """
    dst = Path(dst)
    sources = source_tensors(src)
    metadata = dict(metadata or {})
    if dst.suffix == ".safetensors":
        pieces = _safetensors_pieces(sources, fmt, select)
        _write_safetensors(dst, pieces, metadata, chunk_bytes)
    elif dst.suffix == ".gguf":
        pieces = _gguf_pieces(sources, fmt, select)
        _write_gguf(dst, pieces, fmt, metadata, chunk_bytes)
    else:
        raise FormatError(f"{dst}: streaming writes .safetensors or .gguf files, not {dst.suffix or 'no suffix'}")
    quantized = tuple(p.source.name for p in pieces if p.kind in ("codes", "gguf"))
    kept = tuple(s.name for s in sources if s.name not in set(quantized))
    return StreamResult(dst, quantized, kept, sum(s.nbytes for s in sources), dst.stat().st_size)


def _safetensors_pieces(sources: Sequence[SourceTensor], fmt: str, select: Select) -> list[Piece]:
    if fmt not in SAFETENSORS_FORMATS:
        raise FormatError(f"streaming to safetensors supports {', '.join(SAFETENSORS_FORMATS)}, not {fmt!r}")
    names = {s.name for s in sources}
    pieces = []
    for s in sources:
        if not (_is_float(s) and select(s.name, s.shape)):
            pieces.append(Piece(s.name, s.dtype, s.shape, s.nbytes, s, "copy"))
            continue
        scale_name = f"{s.name}_scale"
        if scale_name in names:
            raise CheckpointError(f"{s.file}: {s.name!r} would be quantized but {scale_name!r} already exists")
        numel = math.prod(s.shape)
        pieces.append(Piece(s.name, SAFETENSORS_FORMATS[fmt], s.shape, numel, s, "codes"))
        pieces.append(Piece(scale_name, "F32", (s.rows,), 4 * s.rows, s, "scale"))
    return sorted(pieces, key=lambda p: (-_DTYPE_RANK.index(p.dtype), p.name))


def safetensors_header(pieces: Sequence[Piece], metadata: dict[str, str] | None = None) -> bytes:
    """The header ``safetensors`` writes for these tensors in this order: compact JSON padded to 8 bytes."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for p in pieces:
        header[p.name] = {"dtype": p.dtype, "shape": list(p.shape), "data_offsets": [offset, offset + p.nbytes]}
        offset += p.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def _write_safetensors(dst: Path, pieces: list[Piece], metadata: dict[str, str], chunk_bytes: int) -> None:
    bad = [k for k, v in metadata.items() if not isinstance(v, str)]
    if bad:
        raise CheckpointError(f"{dst}: safetensors metadata must map str to str; offending keys {bad}")
    header = safetensors_header(pieces, metadata)
    offsets, position = {}, len(header)
    for p in pieces:
        offsets[p.name] = position
        position += p.nbytes
    scales = {p.source.name: p for p in pieces if p.kind == "scale"}
    with atomic_open(dst, "wb") as out, _Sources() as sources:
        out.write(header)
        for p in pieces:
            if p.kind == "copy":
                _copy(sources.handle(p.source), p.source, out, offsets[p.name], chunk_bytes)
            elif p.kind == "codes":
                fmt = next(f for f, d in SAFETENSORS_FORMATS.items() if d == p.dtype)
                scale = scales[p.source.name]
                for start, _, packed in _quantized_chunks(sources.handle(p.source), p.source, fmt, chunk_bytes):
                    _write_at(out, offsets[p.name] + start * p.source.shape_row_numel, _bytes(packed.data))
                    _write_at(out, offsets[scale.name] + 4 * start, _bytes(packed.scale.to(torch.float32)))


def _gguf_pieces(sources: Sequence[SourceTensor], fmt: str, select: Select) -> list[Piece]:
    if fmt not in PACKED_TYPES:
        raise FormatError(f"streaming to GGUF supports {', '.join(PACKED_TYPES)}, not {fmt!r}")
    _, block, block_bytes = PACKED_TYPES[fmt]
    pieces = []
    for s in sources:
        if _torch_dtype(s) not in PLAIN_TYPES:
            raise FormatError(f"{s.file}: GGUF holds float32/float16/bfloat16 tensors, {s.name!r} is {s.dtype}")
        if select(s.name, s.shape) and s.shape[-1] % block == 0:
            pieces.append(Piece(s.name, fmt, s.shape, s.rows * (s.shape[-1] // block * block_bytes), s, "gguf"))
        else:
            pieces.append(Piece(s.name, s.dtype, s.shape, s.nbytes, s, "copy"))
    return pieces


def _write_gguf(dst: Path, pieces: list[Piece], fmt: str, metadata: dict[str, object], chunk_bytes: int) -> None:
    """gguf-py writes the header, metadata and tensor infos; the data goes at the offsets those infos record."""
    with replacing(dst) as tmp:
        writer = gguf.GGUFWriter(tmp, GGUF_ARCH)
        try:
            for key, value in metadata.items():
                _add_metadata(writer, dst, key, value)
            for p in pieces:
                if p.kind == "gguf":
                    shape, dtype, raw = (p.source.rows, p.nbytes // p.source.rows), np.uint8, PACKED_TYPES[fmt][0]
                else:
                    shape, dtype, raw = p.shape, np.float32, PLAIN_TYPES[_torch_dtype(p.source)]
                writer.add_tensor_info(p.name, shape, np.dtype(dtype), p.nbytes, raw_dtype=raw)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            out = writer.fout[0]
            offset = _pad(out.tell(), writer.data_alignment)
            with _Sources() as sources:
                for p in pieces:
                    handle = sources.handle(p.source)
                    if p.kind == "gguf":
                        for first, _, packed in _quantized_chunks(handle, p.source, fmt, chunk_bytes):
                            _write_at(out, offset + first * (p.nbytes // p.source.rows), _bytes(packed.data))
                    else:
                        _copy(handle, p.source, out, offset, chunk_bytes)
                    offset += _pad(p.nbytes, writer.data_alignment)
            out.truncate(offset)  # zero padding after the last tensor, as gguf-py writes it
            out.flush()
        finally:
            writer.close()


# -- row chunks ------------------------------------------------------------------------------------------------------


def _row_ranges(tensor: SourceTensor, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    per_row = max(1, 4 * tensor.shape_row_numel)
    step = max(1, chunk_bytes // per_row)
    for start in range(0, tensor.rows, step):
        yield start, min(tensor.rows, start + step)


def _quantized_chunks(handle: BinaryIO, tensor: SourceTensor, fmt: str, chunk_bytes: int):
    for start, stop in _row_ranges(tensor, chunk_bytes):
        rows = read_rows(handle, tensor, start, stop)
        yield start, stop, quantize(rows, fmt, name=f"{tensor.name}[{start}:{stop}]")


def _copy(handle: BinaryIO, tensor: SourceTensor, out: BinaryIO, offset: int, chunk_bytes: int) -> None:
    done = 0
    while done < tensor.nbytes:
        size = min(chunk_bytes, tensor.nbytes - done)
        handle.seek(tensor.start + done)
        data = handle.read(size)
        if len(data) != size:
            raise CheckpointError(f"{tensor.file}: tensor {tensor.name!r} is truncated; re-download the checkpoint")
        _write_at(out, offset + done, data)
        done += size


def _write_at(out: BinaryIO, offset: int, data: bytes | memoryview) -> None:
    if out.tell() != offset:
        out.seek(offset)
    out.write(data)


def _bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _is_float(tensor: SourceTensor) -> bool:
    return tensor.dtype in ("F16", "BF16", "F32", "F64")


class _Sources:
    """Open source files on demand, closed together."""

    def __enter__(self) -> _Sources:
        self._open: dict[Path, BinaryIO] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._open.values():
            handle.close()

    def handle(self, tensor: SourceTensor) -> BinaryIO:
        if tensor.file not in self._open:
            self._open[tensor.file] = open(tensor.file, "rb")  # noqa: SIM115 (closed in __exit__)
        return self._open[tensor.file]
