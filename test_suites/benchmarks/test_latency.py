"""Latency of every variant: seconds per denoising step and per image, peak GPU memory, stored size.

Each variant is timed on one benchmark prompt with pytest-benchmark's ``pedantic`` (one image per round), and the FP8
reference is timed on the same prompt in the same test, so the ratio in ``extra_info`` compares like with like on
this machine. Per-step times come from the pipeline's step callback; on CUDA every timestamp follows a synchronise
so the wall clock covers the kernels, and the peak of ``torch.cuda.max_memory_allocated`` is recorded. On the 3090
runner, ``--benchmark-compare-fail=median:10%`` against the stored baseline gates latency regressions.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

import torch

from quantkit.pipelines.ideogram4 import sampler_kwargs

ROUNDS = 2
# The slowest a variant may be against the FP8 reference in the same run: on-the-fly dequantization (GGUF, NF4)
# and integer kernels cost something, a 4x slowdown is a regression on any device.
MAX_SLOWDOWN = 4.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(pipe: Any, prompt: Any, settings: Any, resolution: tuple[int, int], record: dict[str, list]) -> None:
    """One image; appends its seconds, per-step seconds and CUDA peak bytes to ``record``."""
    device = pipe.vae.device
    marks: list[float] = []

    def on_step(pipeline: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        _sync(device)
        marks.append(time.perf_counter())
        return kwargs

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    pipe(**sampler_kwargs(prompt, settings, resolution), output_type="pil", callback_on_step_end=on_step)
    _sync(device)
    record["image"].append(time.perf_counter() - start)
    record["step"] += [b - a for a, b in itertools.pairwise(marks)]
    if device.type == "cuda":
        record["peak"].append(torch.cuda.max_memory_allocated(device))


def test_latency_per_variant(benchmark, variant, reference, quantkit_study):
    study = quantkit_study
    prompt, settings, resolution = study.prompts[0], study.sampler, study.config.resolution
    mine: dict[str, list] = {"image": [], "step": [], "peak": []}
    ref: dict[str, list] = {"image": [], "step": [], "peak": []}
    for _ in range(ROUNDS):
        _run(reference.pipeline, prompt, settings, resolution, ref)
    benchmark.pedantic(_run, args=(variant.pipeline, prompt, settings, resolution, mine), rounds=ROUNDS, iterations=1)

    seconds, ref_seconds = min(mine["image"]), min(ref["image"])
    benchmark.extra_info.update(
        seconds_per_image=seconds,
        seconds_per_step=statistics.median(mine["step"]) if mine["step"] else None,
        fp8_seconds_per_image=ref_seconds,
        ratio_to_fp8=seconds / ref_seconds,
        peak_memory_bytes=max(mine["peak"], default=None),
        stored_bytes=study.facts(variant.name).disk_bytes,
        resolution=list(resolution),
        sampler=settings.name,
    )
    assert len(mine["image"]) == ROUNDS
    assert seconds / ref_seconds <= MAX_SLOWDOWN, (
        f"{variant.name} takes {seconds:.3f} s per image, {seconds / ref_seconds:.1f}x the FP8 reference's "
        f"{ref_seconds:.3f} s in the same run (limit {MAX_SLOWDOWN}x)"
    )
