"""GGUF checkpoints through gguf-py: Q4_K / Q8_0 packed bytes, F32 / F16 / BF16 plain tensors, string KV metadata.

Packed GGUF tensors go to ``GGUFWriter`` as their uint8 bytes with ``raw_dtype`` set, so the file holds exactly the
codec's bytes (what llama.cpp, ComfyUI-GGUF and diffusers' GGUF loader read). Reading goes through ``GGUFReader``
and then checks every tensor against its type and shape, so a truncated or corrupted file raises
:class:`CheckpointError` naming the file and the problem instead of yielding garbage weights. Writes are atomic:
``GGUFWriter`` writes a temporary sibling which is then moved over the destination, with the mode a plain ``open``
would give (0644 under the usual umask).

An Ideogram 4 transformer copy is stored as ComfyUI stores it (``comfy/ldm/ideogram4/model.py``: original key names,
fused ``attention.qkv``, no prefix, ``general.architecture = "ideogram4"``), one file per copy.
:func:`storage_dtype` says how plain tensors are kept; :func:`load_transformer` runs any such file (quantkit's or a
third party's, Q4_0 ... IQ4_NL, with or without ``general.architecture``) through diffusers' own GGUF classes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from quantkit.codecs import q4_k, q8_0
from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError
from quantkit.io import replacing

ARCHITECTURE = "ideogram4"
# ComfyUI-GGUF (city96, pull request #455) recognises an Ideogram 4 file without general.architecture by these keys.
DETECTION_KEYS = ("embed_image_indicator.weight", "input_proj.weight", "layers.0.attention.qkv.weight")
# ComfyUI-GGUF strips this prefix when a file carries it (loader.gguf_sd_loader's handle_prefix).
COMFY_PREFIX = "model.diffusion_model."

GGMLType = gguf.GGMLQuantizationType

# Packed formats GGUF can hold: fmt -> (GGML type, weights per block, bytes per block); block facts from the codecs.
PACKED_TYPES = {
    "q4_k": (gguf.GGMLQuantizationType.Q4_K, q4_k.BLOCK, q4_k.BLOCK_BYTES),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, q8_0.BLOCK, q8_0.BLOCK_BYTES),
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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a checkpoint is meant to be shared


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def storage_dtype(tensor: torch.Tensor, *, linear_weight: bool) -> torch.dtype:
    """The dtype a plain tensor is written in: a kept linear weight in BF16, the precision Ideogram 4 ships (F32
    only when bf16 cannot hold its values exactly, e.g. a float32 test model, so a save/load round trip stays
    exact); every other tensor (norms, biases, the image-indicator embedding) in F32, as ComfyUI-GGUF's converter
    keeps 1-D tensors. diffusers wraps every tensor that is not F32/F16 as a ``GGUFParameter``, which only its GGUF
    linears can use: a BF16 norm or bias would load as raw bytes. These tensors are well under 0.1% of the bytes."""
    if linear_weight and tensor.dim() == 2:
        as_bf16 = tensor.to(torch.bfloat16)
        if tensor.dtype == torch.bfloat16 or torch.equal(as_bf16.to(tensor.dtype), tensor):
            return torch.bfloat16
    return torch.float32


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
    reader = _open(source)
    tensors = {t.name: _from_reader_tensor(source, t) for t in reader.tensors}
    metadata = {
        name: _field_value(source, field) for name, field in reader.fields.items() if not name.startswith("GGUF.")
    }
    return tensors, metadata


def _from_reader_tensor(path: Path, t: gguf.ReaderTensor) -> Packed | torch.Tensor:
    shape = _logical_shape(t)
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


# -- any Ideogram 4 GGUF through diffusers' own GGUF classes ----------------------------------------------------------


def load_transformer(
    path: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    compute_dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """A diffusers ``Ideogram4Transformer2DModel`` running the Ideogram 4 GGUF at ``path`` the way diffusers runs a
    GGUF: ``load_gguf_checkpoint`` reads ``GGUFParameter``s, ``GGUFQuantizer`` swaps every linear whose weight is one
    for diffusers' ``GGUFLinear`` and ``load_model_dict_into_meta`` installs the weights (the steps of
    ``FromOriginalModelMixin.from_single_file``, which has no Ideogram 4 entry yet). The only remapping is the one
    ComfyUI's layout needs: fused ``qkv`` rows split into ``to_q`` / ``to_k`` / ``to_v`` (blocks never cross a row).

    ``config``: ``Ideogram4Transformer2DModel`` arguments (e.g. a pipeline's ``transformer.config``); without it the
    dimensions come from the tensor shapes and the rest from diffusers' defaults (the real model's). A file for
    another architecture, shapes the config does not match, or a quant type diffusers cannot dequantize raise
    :class:`CheckpointError`; so does a truncated file.
    """
    from accelerate import init_empty_weights
    from diffusers import GGUFQuantizationConfig, Ideogram4Transformer2DModel
    from diffusers.models.model_loading_utils import load_gguf_checkpoint, load_model_dict_into_meta
    from diffusers.quantizers.auto import DiffusersAutoQuantizer
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    from quantkit.io.ideogram_checkpoints import diffusers_config, diffusers_tensors

    source = Path(path)
    reader = _open(source)
    names = _check_ideogram4(source, reader)
    shapes = {names[t.name]: _logical_shape(t) for t in reader.tensors}
    arguments = _config_from_shapes(shapes) | diffusers_config(config or {})
    with init_empty_weights():
        model = Ideogram4Transformer2DModel.from_config(arguments)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: s for key, s in shapes.items() for k, s in _split_shapes(key, s).items()}
    _check_shapes(source, found, expected)

    state = {names[k]: v for k, v in load_gguf_checkpoint(str(source)).items()}
    state = diffusers_tensors(state, source)
    linear_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for key, value in state.items():
        if isinstance(value, GGUFParameter) and key not in linear_weights:
            # Norms, biases and the embedding are plain parameters in diffusers: only its GGUF linears dequantize.
            state[key] = dequantize_gguf_tensor(value).to(compute_dtype)
    quantizer = DiffusersAutoQuantizer.from_config(GGUFQuantizationConfig(compute_dtype=compute_dtype))
    quantizer.validate_environment()
    quantizer.preprocess_model(model=model, device_map=None, state_dict=state, keep_in_fp32_modules=[])
    load_model_dict_into_meta(
        model,
        state,
        dtype=compute_dtype,
        device_map={"": torch.device(device)},
        hf_quantizer=quantizer,
        keep_in_fp32_modules=[],
        unexpected_keys=[],
    )
    quantizer.postprocess_model(model)
    model.hf_quantizer = quantizer
    return model.eval()


def _open(source: Path) -> gguf.GGUFReader:
    """A ``GGUFReader`` on ``source`` whose every tensor lies inside the file."""
    if not source.is_file():
        raise CheckpointError(f"{source}: no such GGUF file")
    try:
        reader = gguf.GGUFReader(source)
    except Exception as error:  # gguf-py raises ValueError, IndexError, struct and numpy errors on bad files
        raise CheckpointError(f"{source}: not a readable GGUF file ({type(error).__name__}: {error})") from error
    size = source.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise CheckpointError(
                f"{source}: tensor {t.name!r} needs bytes {t.data_offset}..{t.data_offset + t.n_bytes} but the "
                f"file has {size}; the file is truncated"
            )
    return reader


def _check_ideogram4(source: Path, reader: gguf.GGUFReader) -> dict[str, str]:
    """File tensor name -> ComfyUI key, after checking the file is an Ideogram 4 transformer diffusers can run."""
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    field = reader.get_field("general.architecture")
    arch = None if field is None else _field_value(source, field)
    if arch not in (None, ARCHITECTURE):
        raise CheckpointError(f"{source}: a GGUF for architecture {arch!r}, not {ARCHITECTURE!r} (Ideogram 4)")
    names = {t.name: t.name for t in reader.tensors}
    if any(name.startswith(COMFY_PREFIX) for name in names):
        names = {n: n.removeprefix(COMFY_PREFIX) for n in names if n.startswith(COMFY_PREFIX)}
    missing = [key for key in DETECTION_KEYS if key not in names.values()]
    if missing:
        raise CheckpointError(
            f"{source}: no {missing[0]!r}, so not an Ideogram 4 transformer in ComfyUI's key layout "
            f"(a diffusers-keyed or combined two-copy file is not one; write one file per copy)"
        )
    readable = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, *SUPPORTED_GGUF_QUANT_TYPES}
    for t in reader.tensors:
        if t.name in names and t.tensor_type not in readable:
            supported = ", ".join(sorted(q.name for q in readable))
            raise CheckpointError(
                f"{source}: tensor {t.name!r} is {t.tensor_type.name}, which diffusers cannot dequantize "
                f"(supported: {supported})"
            )
    return names


def _logical_shape(t: gguf.ReaderTensor) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(t.shape.tolist()))


def _split_shapes(key: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    from quantkit.io.ideogram_checkpoints import diffusers_keys

    names = diffusers_keys(key)
    return {name: (shape[0] // len(names), *shape[1:]) for name in names}


def _config_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """The dimensions of ``Ideogram4Transformer2DModel`` the tensors fix (rope settings cannot be read off shapes)."""
    try:
        emb, in_channels = shapes["input_proj.weight"]
        head_dim = shapes["layers.0.attention.norm_q.weight"][0]
        return {
            "in_channels": in_channels,
            "num_layers": len({k.split(".")[1] for k in shapes if k.startswith("layers.")}),
            "attention_head_dim": head_dim,
            "num_attention_heads": emb // head_dim,
            "intermediate_size": shapes["layers.0.feed_forward.w1.weight"][0],
            "adaln_dim": shapes["adaln_proj.weight"][0],
            "llm_features_dim": shapes["llm_cond_norm.weight"][0],
        }
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"an Ideogram 4 GGUF needs tensor {error}, which this file lacks") from error


def _check_shapes(source: Path, found: Mapping[str, tuple], expected: Mapping[str, tuple]) -> None:
    for key, shape in expected.items():
        if key not in found:
            raise CheckpointError(f"{source}: lacks tensor {key!r} (shape {shape}) that the model needs")
        if found[key] != shape:
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {found[key]}, the model expects {shape}; "
                "the file is for another model size"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CheckpointError(f"{source}: tensor {extra[0]!r} has no place in Ideogram4Transformer2DModel")
