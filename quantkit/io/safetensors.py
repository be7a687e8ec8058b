"""safetensors checkpoints of int8 / fp8 / nf4 :class:`Packed` tensors and plain tensors, in the layouts others read
(any other non-GGUF format, e.g. one a registered variant brings, in quantkit's own generic layout).

* fp8_e4m3: the published Ideogram 4 layout, ``<name>`` float8_e4m3fn (logical shape) + ``<name>_scale`` float32
  per output row (a per-tensor scalar scale in a foreign file is expanded to one per row on reading).
* int8: the same with ``<name>`` int8.
* nf4: bitsandbytes' ``Params4bit`` serialisation, written and read with bnb's own ``QuantState.as_dict(packed=True)``
  / ``QuantState.from_dict``: ``<name>`` packed uint8, ``<name>.absmax``, ``<name>.quant_map``, with double
  quantization ``<name>.nested_absmax`` and ``<name>.nested_quant_map``, and the JSON
  ``<name>.quant_state.bitsandbytes__nf4``, so bitsandbytes and diffusers load the file as pre-quantized NF4.
  ``Packed`` does not keep the source dtype, so the quant state records ``bfloat16`` (Ideogram 4's compute dtype).

Formats are recognised from the tensors themselves, so published checkpoints load too. The metadata (e.g. the
recipe JSON) goes in the safetensors header. Writes are atomic; a truncated or corrupted file, or tensors that do not
fit together, raise :class:`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from quantkit.codecs import nf4
from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError
from quantkit.io import replacing
from quantkit.io.gguf import PACKED_TYPES

SCALED_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "int8": torch.int8}
FORMAT_OF_DTYPE = {dtype: fmt for fmt, dtype in SCALED_DTYPES.items()}
NF4_STATE_KEY = ".quant_state.bitsandbytes__nf4"
NF4_PARTS = ("absmax", "quant_map", "nested_absmax", "nested_quant_map", NF4_STATE_KEY[1:])
NF4_MODEL_DTYPE = torch.bfloat16
# Any other format (one a registered variant brings) is stored in quantkit's own layout: ``<name>`` the codes,
# ``<name>.quantkit_format.<fmt>`` the logical shape (int64), ``<name>.quantkit_scale``, ``<name>.quantkit_extra.<k>``.
GENERIC_FORMAT = ".quantkit_format."


def save_packed(
    path: str | os.PathLike[str], tensors: Mapping[str, Packed | torch.Tensor], metadata: Mapping[str, str]
) -> None:
    """Write ``tensors`` with ``metadata`` in the safetensors header, atomically."""
    target = Path(path)
    flat: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        for key, value in _serialise(target, name, tensor).items():
            if key in flat:
                raise CheckpointError(f"{target}: two tensors would both be stored under {key!r}; rename one")
            flat[key] = value.detach().cpu().contiguous()
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise CheckpointError(f"{target}: safetensors metadata must map str to str; offending keys {bad}")
    with replacing(target) as tmp:
        safetensors.torch.save_file(flat, tmp, metadata=dict(metadata))


def _serialise(path: Path, name: str, tensor: Packed | torch.Tensor) -> dict[str, torch.Tensor]:
    if not isinstance(tensor, Packed):
        return {name: tensor}
    if tensor.fmt in SCALED_DTYPES:
        return {name: tensor.data.reshape(tensor.shape), f"{name}_scale": tensor.scale}
    if tensor.fmt == "nf4":
        return {f"{name}.{key}": value for key, value in _nf4_state(tensor).as_dict(packed=True).items()} | {
            name: tensor.data
        }
    if tensor.fmt in PACKED_TYPES:
        raise CheckpointError(
            f"{path}: tensor {name!r} is {tensor.fmt}, which this safetensors layout does not hold; "
            f"save GGUF formats with quantkit.io.gguf.write_gguf"
        )
    shape = torch.tensor(tensor.shape, dtype=torch.int64)
    scale = {} if tensor.scale is None else {f"{name}.quantkit_scale": tensor.scale}
    extra = {f"{name}.quantkit_extra.{key}": value for key, value in tensor.extra.items()}
    return {name: tensor.data, f"{name}{GENERIC_FORMAT}{tensor.fmt}": shape} | scale | extra


def _nf4_state(p: Packed):  # -> bitsandbytes.functional.QuantState (bnb is imported only when NF4 is used)
    from bitsandbytes.functional import QuantState

    nested = "nested_absmax" in p.extra
    state2 = (
        QuantState(
            absmax=p.extra["nested_absmax"],
            code=nf4.dynamic_code(),
            blocksize=nf4.NESTED_BLOCKSIZE,
            dtype=torch.float32,
        )
        if nested
        else None
    )
    return QuantState(
        absmax=p.scale,
        shape=torch.Size(p.shape),
        code=nf4.nf4_code(),
        blocksize=int(p.extra["blocksize"]),
        quant_type="nf4",
        dtype=NF4_MODEL_DTYPE,
        offset=p.extra["nested_offset"] if nested else None,
        state2=state2,
    )


def load_packed(path: str | os.PathLike[str]) -> tuple[dict[str, Packed | torch.Tensor], dict[str, str]]:
    """Read a checkpoint written by :func:`save_packed` (or a published FP8 / bnb NF4 one)."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: no such safetensors file")
    try:
        with safetensors.safe_open(source, framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            flat = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as error:  # safetensors raises SafetensorError / OSError on truncated or corrupted files
        raise CheckpointError(f"{source}: not a readable safetensors file ({type(error).__name__}: {error})") from error
    return _assemble(source, flat), metadata


def _assemble(path: Path, flat: dict[str, torch.Tensor]) -> dict[str, Packed | torch.Tensor]:
    nf4_names = [key.removesuffix(NF4_STATE_KEY) for key in flat if key.endswith(NF4_STATE_KEY)]
    consumed: set[str] = set()
    tensors: dict[str, Packed | torch.Tensor] = {}
    for name in nf4_names:
        parts = {f"{name}.{part}" for part in NF4_PARTS if f"{name}.{part}" in flat} | {name}
        if name not in flat:
            raise CheckpointError(f"{path}: NF4 quant state for {name!r} but no packed tensor {name!r}")
        tensors[name] = _nf4_packed(path, name, {key: flat[key] for key in parts})
        consumed |= parts
    for key in [k for k in flat if GENERIC_FORMAT in k]:
        name, _, fmt = key.partition(GENERIC_FORMAT)
        if name not in flat:
            raise CheckpointError(f"{path}: {fmt} shape for {name!r} but no packed tensor {name!r}")
        parts = {k for k in flat if k.startswith(f"{name}.quantkit_")} | {name}
        extra = {k.rpartition(".")[2]: flat[k] for k in parts if k.startswith(f"{name}.quantkit_extra.")}
        shape = tuple(int(n) for n in flat[key].tolist())
        tensors[name] = Packed(fmt, shape, flat[name], flat.get(f"{name}.quantkit_scale"), extra)
        consumed |= parts
    for key, value in flat.items():
        if key in consumed:
            continue
        scale_key = f"{key}_scale"
        if value.dtype in FORMAT_OF_DTYPE and scale_key in flat:
            tensors[key] = _scaled_packed(path, key, value, flat[scale_key])
            consumed |= {key, scale_key}
    for key, value in flat.items():
        if key not in consumed:
            tensors[key] = value
    return tensors


def _scaled_packed(path: Path, name: str, codes: torch.Tensor, scale: torch.Tensor) -> Packed:
    fmt = FORMAT_OF_DTYPE[codes.dtype]
    if codes.dim() == 0:
        raise CheckpointError(f"{path}: {fmt} tensor {name!r} is a scalar; expected [out_features, ...]")
    rows = codes.shape[0]
    if scale.dtype != torch.float32 or scale.numel() not in (1, rows):
        raise CheckpointError(
            f"{path}: {name}_scale should be float32 with one value per row ({rows}) or one in all; "
            f"got {scale.dtype} {tuple(scale.shape)}"
        )
    return Packed(fmt, tuple(codes.shape), codes.reshape(rows, -1), scale.reshape(-1).expand(rows).contiguous())


def _nf4_packed(path: Path, name: str, parts: dict[str, torch.Tensor]) -> Packed:
    from bitsandbytes.functional import QuantState

    try:
        state = QuantState.from_dict({k.removeprefix(f"{name}."): v for k, v in parts.items() if k != name}, "cpu")
    except Exception as error:
        raise CheckpointError(f"{path}: NF4 quant state of {name!r} is malformed ({error})") from error
    data, shape = parts[name], tuple(state.shape)
    n_blocks = math.ceil(math.prod(shape) / state.blocksize)
    problems = [
        state.quant_type != "nf4" and f"quant_type {state.quant_type!r} (only nf4 is read)",
        not torch.equal(state.code, nf4.nf4_code()) and "quant_map is not the NF4 codebook",
        state.blocksize not in nf4.BLOCKSIZES and f"blocksize {state.blocksize}",
        data.dtype != torch.uint8 and f"packed dtype {data.dtype} (only uint8 storage is read)",
        data.numel() != (math.prod(shape) + 1) // 2 and f"{data.numel()} packed bytes for shape {shape}",
        state.absmax.numel() != n_blocks and f"{state.absmax.numel()} absmax values for {n_blocks} blocks",
    ]
    if state.nested:
        problems += [
            not torch.equal(state.state2.code, nf4.dynamic_code()) and "nested_quant_map is not bnb's dynamic map",
            state.state2.blocksize != nf4.NESTED_BLOCKSIZE and f"nested_blocksize {state.state2.blocksize}",
            state.state2.absmax.numel() != math.ceil(n_blocks / nf4.NESTED_BLOCKSIZE) and "nested_absmax length",
        ]
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointError(f"{path}: NF4 tensor {name!r} is inconsistent: {'; '.join(problems)}")
    extra = {"blocksize": torch.tensor(state.blocksize, dtype=torch.int64)}
    if state.nested:
        extra |= {"nested_absmax": state.state2.absmax, "nested_offset": state.offset.to(torch.float32)}
    return Packed("nf4", shape, data.reshape(-1, 1), state.absmax, extra)
