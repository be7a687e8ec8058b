"""quantkit's GGUF files are what ComfyUI and diffusers users load: one file per copy in ComfyUI's Ideogram 4 layout,
detected by ComfyUI-GGUF's rule, and run by diffusers' own GGUF classes with the outputs of quantkit's layers.

The key names, shapes and the detection rule are test data transcribed from the public sources named in
``test_suites/data/comfyui_ideogram4.json`` (repository, path, commit); no third-party code is vendored.
"""

from __future__ import annotations

import json
import os
import stat
from importlib.metadata import version
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from diffusers.quantizers.gguf.utils import GGUFLinear as DiffusersGGUFLinear
from diffusers.quantizers.gguf.utils import GGUFParameter

from quantkit import GGUF, codecs, quantize_
from quantkit.io.gguf import load_transformer, write_gguf
from quantkit.io.ideogram_checkpoints import original_key
from quantkit.nn import GGUFLinear
from quantkit.pipelines.ideogram4 import load_pipeline
from quantkit.pipelines.tiny import tiny_transformer
from quantkit.variants import checkpoint_path, load_variant, save_variant

DATA = json.loads((Path(__file__).parents[1] / "data" / "comfyui_ideogram4.json").read_text())
Q = gguf.GGMLQuantizationType


def comfy_shapes(config) -> dict[str, tuple[int, ...]]:
    """ComfyUI's Ideogram 4 state-dict keys and shapes for a diffusers ``Ideogram4Transformer2DModel`` config."""
    symbols = {
        "emb": config["num_attention_heads"] * config["attention_head_dim"],
        "head": config["attention_head_dim"],
        "inter": config["intermediate_size"],
        "adaln": config["adaln_dim"],
        "llm": config["llm_features_dim"],
        "in": config["in_channels"],
    }

    def dim(text: str) -> int:
        value = 1
        for factor in text.split("*"):
            value *= int(factor) if factor.isdigit() else symbols[factor]
        return value

    keys = DATA["keys"]
    shapes = {k: tuple(map(dim, s)) for k, s in keys["tensors"].items()}
    for i in range(config["num_layers"]):
        shapes |= {k.format(i=i): tuple(map(dim, s)) for k, s in keys["per_layer"].items()}
    return shapes


def comfyui_gguf_arch(names: set[str], arch: str | None) -> str:
    """ComfyUI-GGUF's image-model check (loader.gguf_sd_loader + tools/convert.detect_arch, with PR #455)."""
    rule = DATA["comfyui_gguf"]
    prefix = rule["handle_prefix"]
    if any(n.startswith(prefix) for n in names):
        names = {n[len(prefix) :] for n in names if n.startswith(prefix)}
    if arch in rule["compat_arch_values"]:
        for template in rule["arch_list"]:
            for match in template["keys_detect"]:
                if all(key in names for key in match):
                    assert not any(key in names for key in template["keys_banned"])
                    return template["arch"]
        raise AssertionError("Unknown model architecture!")
    assert arch in rule["img_arch_list"], f"Unexpected architecture type in GGUF file: {arch!r}"
    return arch


@torch.no_grad()
def velocity(model: torch.nn.Module, config, seed: int = 1) -> torch.Tensor:
    """The image-token velocity of one packed sample (5 text, 12 image tokens) as Ideogram4Pipeline builds it."""
    gen = torch.Generator().manual_seed(seed)
    text, image = 5, 12
    positions = torch.arange(text + image)
    out = model(
        hidden_states=torch.randn(1, text + image, config["in_channels"], generator=gen),
        timestep=torch.tensor([0.5]),
        encoder_hidden_states=torch.randn(1, text + image, config["llm_features_dim"], generator=gen),
        position_ids=torch.stack([torch.zeros_like(positions), positions // 4, positions % 4], -1)[None],
        segment_ids=torch.zeros(1, text + image, dtype=torch.long),
        indicator=torch.tensor([3] * text + [2] * image)[None],
    )
    return out.sample[:, text:].float()


def reader_types(path: Path) -> dict[str, tuple[Q, tuple[int, ...]]]:
    return {
        t.name: (t.tensor_type, tuple(int(d) for d in reversed(t.shape.tolist())))
        for t in gguf.GGUFReader(path).tensors
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny pipeline quantized to q4_k and q8_0 and saved as quantkit quantize does."""
    out = {}
    for qtype in ("q4_k", "q8_0"):
        pipe = load_pipeline("tiny")
        quantize_(pipe, GGUF(qtype))
        folder = tmp_path_factory.mktemp(qtype)
        save_variant(pipe, GGUF(qtype), folder)
        out[qtype] = (pipe, folder)
    return out


@pytest.mark.parametrize("qtype", ["q4_k", "q8_0"])
def test_one_file_per_copy_with_comfyui_keys_and_shapes(saved, qtype):
    pipe, folder = saved[qtype]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"ideogram4-{qtype}-cond.gguf", f"ideogram4-{qtype}-uncond.gguf", "recipe.json"]
    )
    for copy in ("cond", "uncond"):
        types = reader_types(checkpoint_path(folder, GGUF(qtype), copy))
        assert {k: s for k, (_, s) in types.items()} == comfy_shapes(pipe.transformer.config)


@pytest.mark.parametrize("qtype", ["q4_k", "q8_0"])
def test_comfyui_gguf_detects_ideogram4_with_and_without_the_architecture_field(saved, qtype):
    _, folder = saved[qtype]
    path = checkpoint_path(folder, GGUF(qtype), "cond")
    reader = gguf.GGUFReader(path)
    arch = reader.get_field("general.architecture").contents()
    names = {t.name for t in reader.tensors}
    assert arch == "ideogram4"
    assert comfyui_gguf_arch(names, arch) == "ideogram4"
    assert comfyui_gguf_arch(names, None) == "ideogram4"  # an sd.cpp-style file falls through to detect_arch
    assert comfyui_gguf_arch({f"model.diffusion_model.{n}" for n in names}, None) == "ideogram4"
    with pytest.raises(AssertionError, match="Unknown model architecture"):  # the old combined, diffusers-keyed file
        comfyui_gguf_arch({f"transformer.{original_key(n)}".replace("qkv", "to_q") for n in names}, None)


def test_tensor_types_linears_quantized_kept_linears_bf16_the_rest_f32(saved):
    _, folder = saved["q4_k"]
    types = reader_types(checkpoint_path(folder, GGUF("q4_k"), "cond"))
    assert types["layers.0.attention.qkv.weight"][0] == Q.Q4_K
    assert types["layers.1.feed_forward.w2.weight"][0] == Q.Q4_K
    # Rows of 16, 416 and 64 weights do not fill a 256-weight Q4_K block: kept, in bf16 as the source holds them.
    for kept in ("input_proj.weight", "llm_cond_proj.weight", "layers.0.adaln_modulation.weight"):
        assert types[kept][0] == Q.BF16, kept
    for plain in ("input_proj.bias", "layers.0.attention_norm1.weight", "embed_image_indicator.weight"):
        assert types[plain][0] == Q.F32, plain


def test_metadata_holds_the_recipe_branch_and_versions(saved):
    _, folder = saved["q8_0"]
    reader = gguf.GGUFReader(checkpoint_path(folder, GGUF("q8_0"), "uncond"))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert json.loads(fields["quantkit.recipe"]) == GGUF("q8_0").to_dict()
    assert fields["quantkit.branch"] == "unconditional_transformer"
    for package in ("quantkit", "torch", "diffusers", "gguf"):
        assert fields[f"quantkit.{package}_version"] == version(package)


def test_files_get_the_mode_of_the_umask_like_any_created_file(tmp_path):
    previous = os.umask(0o027)
    try:
        write_gguf(tmp_path / "a.gguf", {"w": torch.zeros(4)}, {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.gguf").stat().st_mode) == 0o640
    write_gguf(tmp_path / "b.gguf", {"w": torch.zeros(4)}, {})
    assert stat.S_IMODE((tmp_path / "b.gguf").stat().st_mode) == 0o666 & ~previous


def test_fused_qkv_q4_k_rows_are_the_blocks_of_the_split_rows(tmp_path):
    model = tiny_transformer(seed=0)
    attention = model.layers[1].attention
    fused_float = torch.cat([attention.to_q.weight, attention.to_k.weight, attention.to_v.weight]).detach().clone()
    quantize_(model, GGUF("q4_k"))
    save_variant(model, GGUF("q4_k"), tmp_path)
    tensor = next(
        t
        for t in gguf.GGUFReader(tmp_path / "ideogram4-q4_k.gguf").tensors
        if t.name == "layers.1.attention.qkv.weight"
    )
    in_file = torch.from_numpy(np.array(tensor.data))
    split = torch.cat([m.weight for m in (attention.to_q, attention.to_k, attention.to_v)])
    assert torch.equal(in_file, split)
    assert torch.equal(in_file, codecs.quantize(fused_float, "q4_k").data.reshape(in_file.shape))


def test_a_pipeline_round_trip_through_the_two_files_is_exact(saved):
    pipe, folder = saved["q4_k"]
    fresh = load_pipeline("tiny")
    load_variant(fresh, folder)
    for branch in ("transformer", "unconditional_transformer"):
        a, b = getattr(pipe, branch).state_dict(), getattr(fresh, branch).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


@pytest.mark.parametrize("qtype", ["q4_k", "q8_0"])
def test_diffusers_runs_the_file_with_its_own_gguf_layers_and_quantkits_outputs(saved, qtype):
    pipe, folder = saved[qtype]
    model = load_transformer(checkpoint_path(folder, GGUF(qtype), "cond"), pipe.transformer.config)
    ours = {n: m for n, m in pipe.transformer.named_modules() if isinstance(m, GGUFLinear)}
    theirs = {n: m for n, m in model.named_modules() if isinstance(m, DiffusersGGUFLinear)}
    assert set(ours) <= set(theirs)  # quantized linears, plus the kept ones diffusers wraps as BF16 GGUFParameters
    for name, layer in ours.items():
        assert isinstance(theirs[name].weight, GGUFParameter)
        assert theirs[name].weight.quant_type == Q[qtype.upper()]
        assert torch.equal(theirs[name].weight.view(torch.uint8), layer.weight)
    # diffusers dequantizes in float16 (GGUF scales are half and its dequantizers run with dtype=None), quantkit in
    # float32 as ggml does: each weight may differ by one fp16 rounding (rel. 2^-11) of the scale products, so the
    # velocity agrees to ~1e-3 relative, not bit for bit (measured: 8e-4 q4_k, 2e-4 q8_0).
    expected, got = velocity(pipe.transformer, model.config), velocity(model, model.config)
    error = float((got - expected).norm() / expected.norm())
    assert error < 2e-3
