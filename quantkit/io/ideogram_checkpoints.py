"""The published Ideogram 4 checkpoints (``ideogram-ai/ideogram-4-fp8`` and ``-nf4``) in diffusers names.

Each transformer folder (``transformer/``, ``unconditional_transformer/``) holds ``diffusion_pytorch_model.safetensors``
(or shards plus ``diffusion_pytorch_model.safetensors.index.json``) and ``config.json``, with the module names of
Ideogram's own ``modeling_ideogram4.py``. Those match diffusers' ``Ideogram4Transformer2DModel`` except in the
attention, the one mapping below (also what diffusers' Ideogram 4 LoRA converter does):

* ``layers.N.attention.qkv`` (``[3 * hidden, hidden]``, rows q then k then v) -> ``to_q`` / ``to_k`` / ``to_v``;
* ``layers.N.attention.o`` -> ``layers.N.attention.to_out.0``.

FP8: every Linear's ``<name>.weight`` is ``float8_e4m3fn`` with a float32 per-row ``<name>.weight_scale``; norms,
biases and the image-indicator embedding are bf16. NF4: every Linear's weight is a bitsandbytes ``Params4bit``
serialisation (``.weight`` packed uint8, ``.weight.absmax``, ``.weight.quant_map``, optional ``.weight.nested_*``,
``.weight.quant_state.bitsandbytes__nf4``), read with bitsandbytes' own ``QuantState.from_dict``. Splitting qkv is
exact in both: fp8 scales are per row, and NF4 blocks (and the 256-block groups of double quantization, which share
one offset) never straddle q/k/v when ``hidden**2`` is a multiple of them (true for 4608 and for the tiny model).

The writers produce the same layout from a float model, so tests can build tiny published checkpoints.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import bitsandbytes.functional as bnbf
import safetensors
import safetensors.torch
import torch
from diffusers import Ideogram4Transformer2DModel
from torch import nn

from quantkit.atomic import write_bytes, write_json
from quantkit.codecs import nf4, quantize
from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = f"{WEIGHTS_NAME}.index.json"
SCALE_SUFFIX = ".weight_scale"
NF4_STATE = ".quant_state.bitsandbytes__nf4"
NF4_BLOCKSIZE = 64

_QKV = re.compile(r"(layers\.\d+\.attention)\.qkv\.(.+)")
_O = re.compile(r"(layers\.\d+\.attention)\.o\.(.+)")
_SPLIT = ("to_q", "to_k", "to_v")

# Ideogram's own config names -> diffusers' ``Ideogram4Transformer2DModel`` arguments.
_ORIGINAL_CONFIG = {"adanln_dim": "adaln_dim", "num_heads": "num_attention_heads"}

Tensors = dict[str, Packed | torch.Tensor]


# -- the key mapping: the only place that knows how the two layouts differ -------------------------------------------


def diffusers_keys(original: str) -> list[str]:
    """The diffusers key(s) an original key becomes; a fused qkv tensor becomes three, split by rows."""
    if match := _QKV.fullmatch(original):
        return [f"{match[1]}.{proj}.{match[2]}" for proj in _SPLIT]
    if match := _O.fullmatch(original):
        return [f"{match[1]}.to_out.0.{match[2]}"]
    return [original]


def original_key(diffusers: str) -> str:
    """The original key holding a diffusers tensor (the fused qkv key for ``to_q`` / ``to_k`` / ``to_v``)."""
    if match := re.fullmatch(r"(layers\.\d+\.attention)\.to_[qkv]\.(.+)", diffusers):
        return f"{match[1]}.qkv.{match[2]}"
    if match := re.fullmatch(r"(layers\.\d+\.attention)\.to_out\.0\.(.+)", diffusers):
        return f"{match[1]}.o.{match[2]}"
    return diffusers


def original_tensors(tensors: Mapping[str, Packed | torch.Tensor], where: object = "checkpoint") -> Tensors:
    """Diffusers-named tensors in the original layout: ``to_q`` / ``to_k`` / ``to_v`` rows concatenated into ``qkv``.

    Exact for plain tensors and for the row-wise formats (GGUF blocks never cross a row; fp8 / int8 scales are per
    row): the fused tensor's rows are the split tensors' rows, byte for byte."""
    fused: Tensors = {}
    for name in tensors:
        key = original_key(name)
        if key in fused:
            continue
        missing = [k for k in diffusers_keys(key) if k not in tensors]
        if missing:
            raise CheckpointError(f"{where}: {missing[0]!r} is missing, so {key!r} cannot be assembled")
        parts = [tensors[k] for k in diffusers_keys(key)]
        fused[key] = parts[0] if len(parts) == 1 else _concat_rows(parts, key, where)
    return fused


def diffusers_tensors(tensors: Mapping[str, Packed | torch.Tensor], where: object = "checkpoint") -> Tensors:
    """Original-layout tensors in diffusers names: each fused ``qkv`` split by rows into ``to_q`` / ``to_k`` /
    ``to_v`` (the inverse of :func:`original_tensors`)."""
    split: Tensors = {}
    for key, value in tensors.items():
        names = diffusers_keys(key)
        split.update(zip(names, _split(value, len(names), key, where), strict=True))
    return split


_ROW_FORMATS = ("q4_k", "q8_0", "fp8_e4m3", "int8")


def _concat_rows(parts: list[Packed | torch.Tensor], key: str, where: object) -> Packed | torch.Tensor:
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts, dim=0)
    first = parts[0]
    if not all(isinstance(p, Packed) and p.fmt == first.fmt for p in parts) or first.fmt not in _ROW_FORMATS:
        raise CheckpointError(f"{where}: the parts of {key!r} are not all rows of one row-wise format")
    rows = sum(p.shape[0] for p in parts)
    scale = None if first.scale is None else torch.cat([p.scale for p in parts])
    return Packed(first.fmt, (rows, *first.shape[1:]), torch.cat([p.data for p in parts]), scale)


def diffusers_config(config: Mapping[str, object]) -> dict[str, object]:
    """``Ideogram4Transformer2DModel`` arguments from a diffusers-style or an Ideogram-style ``config.json``."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    if "emb_dim" in config:
        config["attention_head_dim"] = int(config.pop("emb_dim")) // int(config["num_heads"])
        config = {_ORIGINAL_CONFIG.get(k, k): v for k, v in config.items()}
    known = set(inspect.signature(Ideogram4Transformer2DModel.__init__).parameters) - {"self"}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k in known}


# -- loading ---------------------------------------------------------------------------------------------------------


def load_published_fp8(path: str | os.PathLike[str], config: Mapping[str, object] | None = None) -> Tensors:
    """The FP8 checkpoint at ``path`` (a transformer folder or one file) in diffusers names: ``fp8_e4m3`` ``Packed``
    for every Linear weight, plain tensors for the rest. Checked against the model ``config`` describes."""
    return _load(path, config, _fp8_linear)


def load_published_nf4(path: str | os.PathLike[str], config: Mapping[str, object] | None = None) -> Tensors:
    """The bitsandbytes NF4 checkpoint at ``path`` in diffusers names: ``nf4`` ``Packed`` (``quantkit.codecs.nf4``'s
    layout, double quantization kept as stored) for every Linear weight, plain tensors for the rest."""
    return _load(path, config, _nf4_linear)


def _load(path: str | os.PathLike[str], config: Mapping[str, object] | None, read_linear: Callable) -> Tensors:
    files = _weight_files(Path(path))
    config = diffusers_config(config if config is not None else _read_config(Path(path)))
    expected = _expected_shapes(config)
    linears = _linear_weights(config)
    with _Reader(files) as reader:
        originals = {original_key(name) for name in expected}
        unexpected = sorted(set(reader.keys) - originals - _side_keys(reader.keys))
        if unexpected:
            raise CheckpointError(
                f"{reader.where(unexpected[0])}: tensor {unexpected[0]!r} has no place in Ideogram4Transformer2DModel "
                f"({len(unexpected)} unexpected tensor(s)); is this an Ideogram 4 transformer checkpoint?"
            )
        tensors: Tensors = {}
        for original in sorted(originals):
            if original not in reader.keys:
                names = ", ".join(diffusers_keys(original))
                raise CheckpointError(f"{reader.path}: checkpoint lacks tensor {original!r} (diffusers {names})")
            value = read_linear(reader, original) if _is_linear(original, linears) else None
            if value is None:
                value = reader.get(original)
            parts = _split(value, len(diffusers_keys(original)), original, reader)
            for name, part in zip(diffusers_keys(original), parts, strict=True):
                want = expected[name]
                if tuple(part.shape) != want:
                    raise CheckpointError(
                        f"{reader.where(original)}: tensor {original!r} ({name}) has shape {tuple(part.shape)}, "
                        f"the model expects {want}; the checkpoint and config.json disagree"
                    )
                tensors[name] = part
    return tensors


def _is_linear(original: str, linears: set[str]) -> bool:
    return any(name in linears for name in diffusers_keys(original))


def _side_keys(keys: set[str]) -> set[str]:
    """Keys that belong to a quantized weight rather than to a model tensor (scales, NF4 state)."""
    return {
        k for k in keys if k.endswith(SCALE_SUFFIX) or re.search(r"\.weight\.(absmax|quant_map|nested_|quant_state)", k)
    }


def _fp8_linear(reader: _Reader, key: str) -> Packed | None:
    codes = reader.get(key)
    if codes.dtype != torch.float8_e4m3fn:
        return None  # a linear kept in bf16: returned as a plain tensor
    scale_key = key.removesuffix(".weight") + SCALE_SUFFIX
    if scale_key not in reader.keys:
        raise CheckpointError(f"{reader.where(key)}: fp8 weight {key!r} has no {scale_key!r}")
    scale = reader.get(scale_key)
    if scale.dtype != torch.float32 or tuple(scale.shape) != (codes.shape[0],):
        raise CheckpointError(
            f"{reader.where(scale_key)}: {scale_key!r} must be float32 [{codes.shape[0]}], "
            f"got {scale.dtype} {tuple(scale.shape)}"
        )
    if bool(((codes.view(torch.uint8) & 0x7F) == 0x7F).any()) or not bool(torch.isfinite(scale).all()):
        raise CheckpointError(f"{reader.where(key)}: {key!r} contains NaN; the checkpoint is corrupted")
    return Packed("fp8_e4m3", tuple(codes.shape), codes, scale)


def _nf4_linear(reader: _Reader, key: str) -> Packed | None:
    if key + NF4_STATE not in reader.keys:
        return None
    where = reader.where(key)
    prefix = key + "."
    state_dict = {k.removeprefix(prefix): reader.get(k) for k in reader.keys if k.startswith(prefix)}
    try:
        state = bnbf.QuantState.from_dict(state_dict, device=torch.device("cpu"))
    except Exception as exc:
        raise CheckpointError(f"{where}: cannot read the NF4 quant state of {key!r}: {exc}") from exc
    if state.quant_type != "nf4" or not torch.equal(state.code.float(), nf4.nf4_code()):
        raise CheckpointError(f"{where}: {key!r} is {state.quant_type} with a non-standard code, not bitsandbytes NF4")
    data = reader.get(key)
    numel = math.prod(state.shape)
    if data.dtype != torch.uint8 or data.numel() != (numel + 1) // 2:
        raise CheckpointError(
            f"{where}: NF4 weight {key!r} should hold {(numel + 1) // 2} uint8 bytes for shape "
            f"{tuple(state.shape)}, got {data.numel()} {data.dtype}"
        )
    if state.absmax.numel() != math.ceil(numel / state.blocksize):
        raise CheckpointError(f"{where}: NF4 absmax of {key!r} has {state.absmax.numel()} blocks, shape disagrees")
    extra = {"blocksize": torch.tensor(state.blocksize, dtype=torch.int64)}
    if state.nested:
        nested = state.state2
        if nested.blocksize != nf4.NESTED_BLOCKSIZE or not torch.equal(nested.code.float(), nf4.dynamic_code()):
            raise CheckpointError(f"{where}: {key!r} double-quantizes its absmax in a way bitsandbytes does not")
        extra |= {"nested_absmax": nested.absmax.float(), "nested_offset": state.offset.float().reshape(())}
    packed = Packed("nf4", tuple(state.shape), data.reshape(-1, 1), state.absmax, extra)
    if not bool(torch.isfinite(nf4.dequantize(packed)).all()):
        raise CheckpointError(f"{where}: NF4 weight {key!r} decodes to NaN or Inf; the checkpoint is corrupted")
    return packed


def _split(value: Packed | torch.Tensor, parts: int, key: str, where: object) -> list[Packed | torch.Tensor]:
    """Split a fused qkv tensor by rows into ``parts`` equal pieces (a no-op for one part)."""
    if parts == 1:
        return [value]
    where = where.where(key) if isinstance(where, _Reader) else where
    rows = value.shape[0]
    if rows % parts:
        raise CheckpointError(f"{where}: fused {key!r} has {rows} rows, not a multiple of {parts}")
    if isinstance(value, torch.Tensor):
        return list(value.chunk(parts, dim=0))
    shape = (rows // parts, *value.shape[1:])
    if value.fmt in _ROW_FORMATS:
        scales = [None] * parts if value.scale is None else list(value.scale.chunk(parts))
        return [Packed(value.fmt, shape, d, s) for d, s in zip(value.data.chunk(parts), scales, strict=True)]
    numel, blocksize = math.prod(shape), int(value.extra["blocksize"])
    blocks = numel // blocksize
    nested = "nested_absmax" in value.extra
    if numel % blocksize or numel % 2 or (nested and blocks % nf4.NESTED_BLOCKSIZE):
        raise CheckpointError(f"{where}: NF4 blocks of {key!r} straddle the q/k/v boundary")
    pieces = []
    for i in range(parts):
        extra = dict(value.extra)
        if nested:
            per = blocks // nf4.NESTED_BLOCKSIZE
            extra["nested_absmax"] = value.extra["nested_absmax"][i * per : (i + 1) * per]
        data = value.data[i * numel // 2 : (i + 1) * numel // 2]
        pieces.append(Packed(value.fmt, shape, data, value.scale[i * blocks : (i + 1) * blocks], extra))
    return pieces


class _Reader:
    """Every tensor of a (possibly sharded) safetensors checkpoint, opened lazily; errors name the file."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.path = files[0].parent if len(files) > 1 else files[0]

    def __enter__(self) -> _Reader:
        self._handles = {}
        self._owner: dict[str, Path] = {}
        for file in self.files:
            try:
                handle = safetensors.safe_open(file, framework="pt")
            except Exception as exc:
                raise CheckpointError(f"{file}: not a readable safetensors file ({exc}); re-download it") from exc
            self._handles[file] = handle
            for key in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                self._owner[key] = file
        self.keys = set(self._owner)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handles.clear()

    def where(self, key: str) -> Path:
        return self._owner.get(key, self.path)

    def get(self, key: str) -> torch.Tensor:
        try:
            return self._handles[self._owner[key]].get_tensor(key)
        except Exception as exc:
            raise CheckpointError(f"{self.where(key)}: cannot read tensor {key!r} ({exc})") from exc


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / INDEX_NAME).is_file():
        try:
            weight_map = json.loads((path / INDEX_NAME).read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path / INDEX_NAME}: not a safetensors index ({exc})") from exc
        files = [path / name for name in sorted(set(weight_map.values()))]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{path}: shard {missing[0].name} listed in {INDEX_NAME} is missing")
        return files
    if (path / WEIGHTS_NAME).is_file():
        return [path / WEIGHTS_NAME]
    raise CheckpointError(f"{path}: no {WEIGHTS_NAME} or {INDEX_NAME}; point at a transformer folder of the checkpoint")


def _read_config(path: Path) -> dict[str, object]:
    config = (path.parent if path.is_file() else path) / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{config} is missing; pass config= (the transformer's config.json) explicitly")
    return json.loads(config.read_text())


def _meta_model(config: Mapping[str, object]) -> nn.Module:
    with torch.device("meta"):
        return Ideogram4Transformer2DModel(**config)


def _expected_shapes(config: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in _meta_model(config).state_dict().items()}


def _linear_weights(config: Mapping[str, object]) -> set[str]:
    model = _meta_model(config)
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear)}


# -- writing the published layout (for tests and tiny fixtures) -----------------------------------------------------


def write_published_fp8(model: nn.Module, folder: str | os.PathLike[str], *, shards: int = 1) -> None:
    """Write ``model`` as Ideogram's FP8 release does: fp8 e4m3 linears with per-row scales, bf16 elsewhere."""

    def linear(key: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        packed = quantize(weight, "fp8_e4m3", name=key)
        return {key: packed.data, key.removesuffix(".weight") + SCALE_SUFFIX: packed.scale}

    _write(model, Path(folder), shards, linear)


def write_published_nf4(
    model: nn.Module, folder: str | os.PathLike[str], *, shards: int = 1, nested: bool = False
) -> None:
    """Write ``model`` as bitsandbytes serialises ``Linear4bit`` (nf4, blocksize 64), bf16 elsewhere."""

    def linear(key: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        data, state = bnbf.quantize_4bit(
            weight.to(torch.bfloat16), blocksize=NF4_BLOCKSIZE, compress_statistics=nested, quant_type="nf4"
        )
        return {key: data, **{f"{key}.{k}": v for k, v in state.as_dict(packed=True).items()}}

    _write(model, Path(folder), shards, linear)


def _write(model: nn.Module, folder: Path, shards: int, linear: Callable[[str, torch.Tensor], dict]) -> None:
    linear_keys = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    tensors: dict[str, torch.Tensor] = {}
    for original, value in _original_state(model):
        if original in _fused_linear_keys(linear_keys):
            tensors.update(linear(original, value.float()))
        else:
            tensors[original] = value.to(torch.bfloat16).contiguous()
    write_json(folder / "config.json", {k: v for k, v in model.config.items() if not k.startswith("_")})
    names = sorted(tensors)
    groups = [names[i::shards] for i in range(shards)]
    if shards == 1:
        write_bytes(folder / WEIGHTS_NAME, safetensors.torch.save(tensors))
        return
    weight_map = {}
    for i, group in enumerate(groups, 1):
        file = f"diffusion_pytorch_model-{i:05d}-of-{shards:05d}.safetensors"
        write_bytes(folder / file, safetensors.torch.save({k: tensors[k] for k in group}))
        weight_map.update(dict.fromkeys(group, file))
    write_json(folder / INDEX_NAME, {"metadata": {}, "weight_map": weight_map})


def _fused_linear_keys(linear_keys: set[str]) -> set[str]:
    return {original_key(k) for k in linear_keys}


def _original_state(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's state in the original layout: ``to_q/to_k/to_v`` concatenated into ``qkv``."""
    state = model.state_dict()
    done: set[str] = set()
    for name in state:
        original = original_key(name)
        if original in done:
            continue
        done.add(original)
        parts = [state[k] for k in diffusers_keys(original)]
        yield original, torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
