"""A calibration run: the source pipeline generates the calibration prompts while every Linear is observed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from quantkit.calibrate.stats import CalibrationStats, StatsCollector
from quantkit.errors import QuantkitError
from quantkit.pipelines import BRANCHES
from quantkit.prompts.prompt import Prompt


def calibrate_pipeline(
    pipe: Any,
    prompts: Sequence[Prompt],
    settings: Any,
    *,
    resolution: tuple[int, int],
    progress: Callable[[], None] | None = None,
) -> CalibrationStats:
    """Statistics of both transformers over every denoising step of every prompt (each prompt is a new run, so
    step indices restart; the unconditional branch sees its own, text-free inputs). ``progress`` is called after
    each prompt (calibration is minutes of generation on real weights)."""
    from quantkit.pipelines.ideogram4 import generate

    if not prompts:
        raise QuantkitError("calibration needs at least one prompt; the prompt set has none left to calibrate on")
    with StatsCollector({name: getattr(pipe, name) for name in BRANCHES}) as collector:
        for index, prompt in enumerate(prompts):
            if index:
                collector.new_run()
            generate(pipe, [prompt], settings, resolution=resolution)
            if progress is not None:
                progress()
    return collector.result()
