"""Any Ideogram 4 GGUF runs as a study variant: third-party quant types through diffusers' dequantizers, files with or
without ``general.architecture``, and one-line errors for files that cannot be this model."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from diffusers.quantizers.gguf.utils import GGUFLinear as DiffusersGGUFLinear
from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

from quantkit.errors import CheckpointError, QuantkitError
from quantkit.gguf_variant import parse_variants
from quantkit.io.gguf import load_transformer
from quantkit.io.ideogram_checkpoints import original_key, original_tensors
from quantkit.pipelines.ideogram4 import load_pipeline
from quantkit.study import Study, StudyConfig

Q = gguf.GGMLQuantizationType


def write_third_party(path: Path, model: torch.nn.Module, qtype: Q, *, arch: str | None = None, blocks=None) -> Path:
    """An Ideogram 4 GGUF as other tools write it: ComfyUI keys, linears in ``qtype`` (gguf-py's quantizer, or
    ``blocks(shape)`` for types gguf-py only decodes), everything else F16, ``general.architecture`` only if ``arch``
    (stable-diffusion.cpp's exports carry none)."""
    writer = gguf.GGUFWriter(path, arch or "ideogram4")
    if arch is None:
        del writer.kv_data[0]["general.architecture"]
    linears = {original_key(f"{n}.weight") for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    for key, tensor in original_tensors(model.state_dict()).items():
        array = tensor.detach().float().numpy()
        if key in linears and array.shape[-1] % block == 0:
            data = blocks(array.shape) if blocks else gguf.quants.quantize(array, qtype)
            writer.add_tensor(key, data, raw_dtype=qtype)
        else:
            writer.add_tensor(key, array.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def random_blocks(qtype: Q, seed: int = 0):
    """Valid rows of ``qtype`` blocks for a given weight shape: random codes, small finite fp16 scales."""
    scale_bytes = {Q.Q5_K: slice(0, 4), Q.IQ4_NL: slice(0, 2), Q.Q6_K: slice(208, 210)}[qtype]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)

    def make(shape: tuple[int, ...]) -> np.ndarray:
        data = rng.integers(0, 256, size=(shape[0] * shape[1] // block, size), dtype=np.uint8)
        n = (scale_bytes.stop - scale_bytes.start) // 2
        data[:, scale_bytes] = rng.uniform(1e-4, 1e-3, size=(len(data), n)).astype(np.float16).view(np.uint8)
        return data.reshape(shape[0], -1)

    return make


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny")


@pytest.mark.parametrize("qtype", [Q.Q5_K, Q.IQ4_NL, Q.Q6_K])
def test_quant_types_gguf_py_only_decodes_run_through_diffusers_dequantizers(tmp_path, pipe, qtype):
    path = write_third_party(tmp_path / "x.gguf", pipe.transformer, qtype, blocks=random_blocks(qtype))
    model = load_transformer(path, pipe.transformer.config)
    stored = {t.name: t for t in gguf.GGUFReader(path).tensors}
    layer = model.layers[0].feed_forward.w2
    assert isinstance(layer, DiffusersGGUFLinear) and layer.weight.quant_type == qtype
    reference = gguf.quants.dequantize(np.array(stored["layers.0.feed_forward.w2.weight"].data), qtype)
    # diffusers decodes in float16 (its dequantizers run with dtype=None on half scales), gguf-py in float32.
    got = dequantize_gguf_tensor(layer.weight).float().numpy()
    assert np.allclose(got, reference, rtol=2e-3, atol=1e-3 * np.abs(reference).max())


def test_an_sd_cpp_style_q4_0_file_pair_runs_as_a_study_variant(tmp_path, pipe):
    cond = write_third_party(tmp_path / "cond.gguf", pipe.transformer, Q.Q4_0)
    uncond = write_third_party(tmp_path / "uncond.gguf", pipe.unconditional_transformer, Q.Q4_0)
    spec = f"gguf:{cond},{uncond}"
    variants = parse_variants(f"fp8,{spec}")
    assert variants == ("fp8", spec)
    config = StudyConfig(variants=variants, prompt_limit=2, metrics=("psnr",), cache_dir=str(tmp_path / "cache"))
    study = Study(config, progress=False)
    variant = study.variant(spec)
    assert isinstance(variant.pipeline.unconditional_transformer.layers[0].attention.to_q, DiffusersGGUFLinear)
    assert {r.fmt for r in variant.report.quantized} == {"q4_0"}
    psnr = study.scores(spec)["psnr"]
    assert len(psnr) == 2 and all(15.0 < v < 100.0 for v in psnr.values())  # close to fp8, not identical
    assert study.facts(spec).disk_bytes < study.facts("fp8").disk_bytes


def test_one_file_replaces_only_the_conditional_copy(tmp_path, pipe):
    cond = write_third_party(tmp_path / "cond.gguf", pipe.transformer, Q.Q8_0, arch="ideogram4")
    study = Study(StudyConfig(variants=("fp8", f"gguf:{cond}"), prompt_limit=1, metrics=("psnr",)), progress=False)
    variant = study.variant(f"gguf:{cond}")
    assert isinstance(variant.pipeline.transformer.layers[0].feed_forward.w1, DiffusersGGUFLinear)
    assert type(variant.pipeline.unconditional_transformer.layers[0].feed_forward.w1) is torch.nn.Linear


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_wrong_architecture_is_a_one_line_error(tmp_path, pipe):
    path = write_third_party(tmp_path / "flux.gguf", pipe.transformer, Q.Q8_0, arch="flux")
    with pytest.raises(CheckpointError) as error:
        load_transformer(path, pipe.transformer.config)
    assert "architecture 'flux', not 'ideogram4'" in one_line(error)


def test_a_file_for_another_model_size_is_a_one_line_error(tmp_path, pipe):
    path = write_third_party(tmp_path / "x.gguf", pipe.transformer, Q.Q8_0)
    bigger = {**pipe.transformer.config, "intermediate_size": 1024}
    with pytest.raises(CheckpointError) as error:
        load_transformer(path, bigger)
    assert "feed_forward.w1.weight' has shape (512, 256), the model expects (1024, 256)" in one_line(error)


def test_a_quant_type_diffusers_cannot_dequantize_is_a_one_line_error(tmp_path, pipe):
    def q8_1(shape):
        block, size = gguf.GGML_QUANT_SIZES[Q.Q8_1]
        return np.zeros((shape[0], shape[1] // block * size), dtype=np.uint8)

    path = write_third_party(tmp_path / "x.gguf", pipe.transformer, Q.Q8_1, blocks=q8_1)
    with pytest.raises(CheckpointError) as error:
        load_transformer(path, pipe.transformer.config)
    assert "is Q8_1, which diffusers cannot dequantize" in one_line(error)


def test_a_truncated_file_is_a_checkpoint_error(tmp_path, pipe):
    path = write_third_party(tmp_path / "x.gguf", pipe.transformer, Q.Q8_0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated|not a readable GGUF"):
        load_transformer(path, pipe.transformer.config)


def test_a_missing_file_or_bad_spec_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(QuantkitError, match="is not a file"):
        Study(StudyConfig(variants=("fp8", f"gguf:{tmp_path / 'absent.gguf'}")), progress=False).variant(
            f"gguf:{tmp_path / 'absent.gguf'}"
        )
