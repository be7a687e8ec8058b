"""The tiny gate profile can fail: a plainly broken quantizer is caught, with a one-line verdict.

The gate suites show that the correct quantizers pass these gates; here the INT8 weight codec gets a scale bug
(every per-channel scale halved, so every INT8 weight is half as large as it should be) and the study that a CI run
would make must fail the INT8 fidelity gates. A fresh cache keeps the bug's images apart from correct ones.
"""

import dataclasses

import pytest

from quantkit.codecs import int8
from quantkit.profiles import load_profile
from quantkit.study import Study, StudyConfig


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
    verdicts, _ = load_profile("tiny").evaluate(table, n_resamples=1000)
    int8_psnr = [
        v for v in verdicts if v.gate.variant == "int8_w8a8" and v.gate.metric == "psnr" and not v.gate.reference
    ]
    assert len(int8_psnr) == 1
    assert not int8_psnr[0].passed
    assert int8_psnr[0].message.startswith("psnr: int8_w8a8 = ")
    assert int8_psnr[0].message.endswith("gate ci_limit failed")
