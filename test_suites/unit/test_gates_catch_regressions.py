"""The tiny gate profile can fail: a plainly broken quantizer is caught, with a one-line verdict.

The gate suites show that the correct quantizers pass these gates; here the INT8 weight codec gets a scale bug
(every per-channel scale halved, so every INT8 weight is half as large as it should be) and the study that a CI run
would make must fail the INT8 fidelity gates. The Q4_K codec gets a scale bug that wipes out the trained tiny
model's text, and the text gate must fail on it while the correct quantizer passes the same gate. (Measured: with
``d`` x 1.5, and already x 1.15, OCR exact match falls from 0.78 to 0 and PSNR to 6.5 dB, so the image is lost with
the glyphs; at x 1.02 nothing changes. A fault that blurs glyphs but keeps the picture was not isolated.)
A fresh cache per test keeps a bug's images apart from correct ones.
"""

import dataclasses

import pytest
import torch

from quantkit.codecs import int8, q4_k
from quantkit.profiles import load_profile
from quantkit.study import Study, StudyConfig

Q4_K_SCALE_ERROR = 1.5


@pytest.fixture
def halved_int8_scales(monkeypatch):
    quantize = int8.quantize

    def buggy(w, *, name="tensor"):
        packed = quantize(w, name=name)
        return dataclasses.replace(packed, scale=packed.scale * 0.5)

    monkeypatch.setattr(int8, "quantize", buggy)


def test_an_int8_scale_bug_fails_the_tiny_fidelity_gates(tmp_path, halved_int8_scales):
    config = StudyConfig(
        variants=("fp8", "int8_w8a8"),
        metrics=("psnr", "ssim"),
        prompt_limit=3,
        calibration_prompts=2,
        cache_dir=str(tmp_path / "cache"),
    )
    table = Study(config, progress=False).score_all()
    verdicts = load_profile("tiny").evaluate(table, n_resamples=1000).verdicts
    int8_psnr = [
        v for v in verdicts if v.gate.variant == "int8_w8a8" and v.gate.metric == "psnr" and not v.gate.reference
    ]
    assert len(int8_psnr) == 1
    assert not int8_psnr[0].passed
    assert int8_psnr[0].message.startswith("psnr: int8_w8a8 = ")
    assert int8_psnr[0].message.endswith("gate ci_limit failed")


@pytest.fixture
def inflated_q4_k_scales(monkeypatch):
    """Every Q4_K super-block's ``d`` (the fp16 scale of its 6-bit sub-block scales) multiplied by Q4_K_SCALE_ERROR:
    the levels decode to the wrong magnitudes, as a scale bug in a GGUF writer would make them."""
    quantize = q4_k.quantize

    def buggy(w, *, name="tensor"):
        packed = quantize(w, name=name)
        blocks = packed.data.reshape(-1, q4_k.BLOCK_BYTES).clone()
        d = blocks[:, 0:2].contiguous().view(torch.float16).float() * Q4_K_SCALE_ERROR
        blocks[:, 0:2] = d.half().view(torch.uint8)
        return dataclasses.replace(packed, data=blocks.reshape(packed.data.shape))

    monkeypatch.setattr(q4_k, "quantize", buggy)


def _q4_k_ocr_verdicts(cache):
    config = StudyConfig(
        variants=("fp8", "q4_k"), metrics=("ocr_exact", "ocr_ned"), prompt_limit=10, cache_dir=str(cache)
    )
    table = Study(config, progress=False).score_all()
    verdicts = load_profile("tiny").evaluate(table, n_resamples=1000).verdicts
    return [v for v in verdicts if v.gate.variant == "q4_k" and v.gate.metric == "ocr_exact"]


def test_a_q4_k_scale_bug_that_wipes_out_the_text_fails_the_tiny_ocr_gate(tmp_path, inflated_q4_k_scales):
    (verdict,) = _q4_k_ocr_verdicts(tmp_path / "cache")
    assert not verdict.passed
    assert verdict.message.startswith("ocr_exact: q4_k - fp8 = ")


def test_the_correct_q4_k_quantizer_passes_the_same_ocr_gate(tmp_path):
    (verdict,) = _q4_k_ocr_verdicts(tmp_path / "cache")
    assert verdict.passed, verdict.message
