"""The published FP8 and NF4 checkpoints, written in Ideogram's original layout, load into diffusers names exactly."""

from __future__ import annotations

import json

import bitsandbytes.functional as bnbf
import pytest
import safetensors.torch
import torch
from calibration_helpers import branch_inputs

from quantkit.codecs import dequantize, quantize
from quantkit.codecs.base import Packed
from quantkit.errors import CheckpointError
from quantkit.io.ideogram_checkpoints import (
    WEIGHTS_NAME,
    diffusers_config,
    diffusers_keys,
    load_published_fp8,
    load_published_nf4,
    original_key,
    write_published_fp8,
    write_published_nf4,
)
from quantkit.nn import FP8Linear, NF4Linear
from quantkit.pipelines.tiny import TINY_TRANSFORMER_CONFIG, tiny_transformer
from quantkit.quantize import load_packed_into
from test_suites.oracles import nf4_reference


@pytest.fixture(scope="module")
def model():
    return tiny_transformer(seed=3)


def linear_weights(model):
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def nf4_decode(p: Packed) -> torch.Tensor:
    return dequantize(p, torch.bfloat16).float()


def test_the_key_mapping_splits_qkv_and_renames_o():
    assert diffusers_keys("layers.3.attention.qkv.weight") == [
        "layers.3.attention.to_q.weight",
        "layers.3.attention.to_k.weight",
        "layers.3.attention.to_v.weight",
    ]
    assert diffusers_keys("layers.3.attention.o.weight_scale") == ["layers.3.attention.to_out.0.weight_scale"]
    assert diffusers_keys("layers.0.feed_forward.w2.weight") == ["layers.0.feed_forward.w2.weight"]
    assert original_key("layers.3.attention.to_k.weight") == "layers.3.attention.qkv.weight"
    assert original_key("final_layer.adaln_modulation.bias") == "final_layer.adaln_modulation.bias"


def test_the_written_file_uses_the_original_names(model, tmp_path):
    write_published_fp8(model, tmp_path)
    keys = set(safetensors.torch.load_file(tmp_path / WEIGHTS_NAME))
    assert "layers.0.attention.qkv.weight" in keys and "layers.0.attention.qkv.weight_scale" in keys
    assert "layers.1.attention.o.weight" in keys and "layers.0.adaln_modulation.bias" in keys
    assert not any("to_q" in k or "to_out" in k for k in keys)
    # per block: qkv, o, w1-w3 (weight + scale), adaln_modulation (+ bias), 6 norms; 23 tensors outside the blocks
    assert len(keys) == 19 * 2 + 23


@pytest.mark.parametrize("shards", [1, 3])
def test_fp8_checkpoint_loads_and_reproduces_the_source_weights(model, tmp_path, shards):
    write_published_fp8(model, tmp_path, shards=shards)
    tensors = load_published_fp8(tmp_path)
    source = model.state_dict()
    assert set(tensors) == set(source)
    for name, value in tensors.items():
        if name in linear_weights(model):
            assert isinstance(value, Packed) and value.fmt == "fp8_e4m3", name
            expected = dequantize(quantize(source[name], "fp8_e4m3"))
            assert torch.equal(dequantize(value), expected), name  # per-row scales: the split is exact
            torch.testing.assert_close(dequantize(value), source[name], rtol=0.07, atol=1e-6)
        else:
            assert torch.equal(value, source[name].to(torch.bfloat16)), name


@pytest.mark.parametrize("nested", [False, True])
def test_nf4_checkpoint_loads_and_reproduces_the_source_weights(model, tmp_path, nested):
    write_published_nf4(model, tmp_path, nested=nested)
    tensors = load_published_nf4(tmp_path)
    source = model.state_dict()
    assert set(tensors) == set(source)
    for name in linear_weights(model):
        packed = tensors[name]
        assert isinstance(packed, Packed) and packed.fmt == "nf4" and packed.shape == tuple(source[name].shape)
        fused = original_key(name)
        data, state = bnbf.quantize_4bit(
            torch.cat([source[k] for k in diffusers_keys(fused)]).to(torch.bfloat16),
            blocksize=64,
            compress_statistics=nested,
            quant_type="nf4",
        )
        whole = nf4_reference.decode_state(data, state, torch.bfloat16).float()  # bnb's bytes, decoded exactly
        index = diffusers_keys(fused).index(name)
        expected = whole.chunk(len(diffusers_keys(fused)))[index]
        assert torch.equal(nf4_decode(packed), expected), name
        torch.testing.assert_close(nf4_decode(packed), source[name], rtol=0.5, atol=0.35 * source[name].abs().max())


def test_a_missing_tensor_is_named(model, tmp_path):
    write_published_fp8(model, tmp_path)
    tensors = safetensors.torch.load_file(tmp_path / WEIGHTS_NAME)
    del tensors["layers.1.feed_forward.w2.weight"], tensors["layers.1.feed_forward.w2.weight_scale"]
    safetensors.torch.save_file(tensors, tmp_path / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match=r"lacks tensor 'layers\.1\.feed_forward\.w2\.weight'"):
        load_published_fp8(tmp_path)


def test_a_misshapen_tensor_is_named_with_both_shapes(model, tmp_path):
    write_published_fp8(model, tmp_path)
    tensors = safetensors.torch.load_file(tmp_path / WEIGHTS_NAME)
    tensors["layers.0.ffn_norm1.weight"] = tensors["layers.0.ffn_norm1.weight"][:100]
    safetensors.torch.save_file(tensors, tmp_path / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match=r"'layers\.0\.ffn_norm1\.weight'.*\(100,\).*\(256,\)"):
        load_published_fp8(tmp_path)


def test_a_missing_scale_and_an_unexpected_tensor_are_named(model, tmp_path):
    write_published_fp8(model, tmp_path)
    tensors = safetensors.torch.load_file(tmp_path / WEIGHTS_NAME)
    tensors["layers.0.attention.q_proj.weight"] = torch.zeros(2)
    safetensors.torch.save_file(tensors, tmp_path / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match=r"'layers\.0\.attention\.q_proj\.weight'"):
        load_published_fp8(tmp_path)
    del tensors["layers.0.attention.q_proj.weight"], tensors["input_proj.weight_scale"]
    safetensors.torch.save_file(tensors, tmp_path / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match=r"'input_proj\.weight_scale'"):
        load_published_fp8(tmp_path)


def test_a_truncated_file_is_a_clear_error(model, tmp_path):
    write_published_fp8(model, tmp_path)
    path = tmp_path / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_published_fp8(tmp_path)


def test_nan_codes_in_an_fp8_weight_are_rejected(model, tmp_path):
    write_published_fp8(model, tmp_path)
    tensors = safetensors.torch.load_file(tmp_path / WEIGHTS_NAME)
    codes = tensors["adaln_proj.weight"].view(torch.uint8).clone()
    codes[0, 0] = 0x7F
    tensors["adaln_proj.weight"] = codes.view(torch.float8_e4m3fn)
    safetensors.torch.save_file(tensors, tmp_path / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match=r"adaln_proj\.weight.*NaN"):
        load_published_fp8(tmp_path)


def test_ideogram_style_config_is_translated(tmp_path):
    hidden = TINY_TRANSFORMER_CONFIG["attention_head_dim"] * TINY_TRANSFORMER_CONFIG["num_attention_heads"]
    original = {
        "emb_dim": hidden,
        "num_heads": TINY_TRANSFORMER_CONFIG["num_attention_heads"],
        "adanln_dim": TINY_TRANSFORMER_CONFIG["adaln_dim"],
        "mrope_section": list(TINY_TRANSFORMER_CONFIG["mrope_section"]),
        "attention_backend": "auto",
    }
    config = diffusers_config(original)
    assert config["attention_head_dim"] == TINY_TRANSFORMER_CONFIG["attention_head_dim"]
    assert config["adaln_dim"] == TINY_TRANSFORMER_CONFIG["adaln_dim"]
    assert config["mrope_section"] == TINY_TRANSFORMER_CONFIG["mrope_section"]
    assert "attention_backend" not in config
    json.dumps(config)


@pytest.mark.parametrize(("write", "load", "layer"), [(write_published_fp8, load_published_fp8, FP8Linear),
                                                     (write_published_nf4, load_published_nf4, NF4Linear)])  # fmt: skip
def test_published_checkpoints_run_in_diffusers_ideogram4_transformer(model, tmp_path, write, load, layer):
    write(model, tmp_path, shards=2)
    tensors = load(tmp_path)
    quantized = tiny_transformer(seed=99)  # other weights: everything must come from the checkpoint
    installed = load_packed_into(quantized, tensors)
    assert len(installed) == len(linear_weights(model))
    assert isinstance(quantized.layers[0].attention.to_k, layer)
    # NF4 layers run bitsandbytes' kernel where its result is exact (rows of whole blocks on CPU) and the codec's
    # decoding elsewhere; the reference decodes every weight with the codec. Both multiply in float32.
    reference = tiny_transformer(seed=99)
    reference.load_state_dict({k: dequantize(v) if isinstance(v, Packed) else v.float() for k, v in tensors.items()})
    gen = torch.Generator().manual_seed(0)
    inputs = branch_inputs(torch.randn(1, 16, 16, generator=gen), torch.randn(1, 3, 416, generator=gen), 0.3)
    with torch.no_grad():
        torch.testing.assert_close(quantized(**inputs).sample, reference(**inputs).sample, rtol=1e-5, atol=1e-5)
