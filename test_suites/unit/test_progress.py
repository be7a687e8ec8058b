"""Long steps report progress: calibration once per prompt, scoring once per metric batch (a bar on stderr)."""

import types
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from quantkit import study as study_module
from quantkit.calibrate.run import calibrate_pipeline
from quantkit.pipelines import ideogram4
from quantkit.prompts.prompt import Prompt
from quantkit.store.cache import ImageKey
from quantkit.study import Study, StudyConfig

PROMPTS = [Prompt(f"p{i}", "c", "a fox", '{"high_level_description":"A fox."}', seed=i) for i in range(5)]


def test_calibration_reports_each_prompt(monkeypatch):
    pipe = types.SimpleNamespace(transformer=nn.Sequential(nn.Linear(8, 8)))
    pipe.unconditional_transformer = nn.Sequential(nn.Linear(8, 8))

    def generate(pipe, prompts, settings, *, resolution):  # two steps of both branches per prompt
        for _ in range(2):
            pipe.transformer(torch.randn(1, 3, 8))
            pipe.unconditional_transformer(torch.randn(1, 3, 8))

    monkeypatch.setattr(ideogram4, "generate", generate)
    ticks = []
    calibrate_pipeline(pipe, PROMPTS[:3], None, resolution=(16, 16), progress=lambda: ticks.append(1))
    assert len(ticks) == 3


class Recorder:
    """Stands in for the study's progress bar and records what it was told."""

    made: ClassVar[list] = []

    def __init__(self, enabled, total, desc, unit="img"):
        self.enabled, self.total, self.desc, self.updates = enabled, total, desc, []
        Recorder.made.append(self)

    def __enter__(self):
        return types.SimpleNamespace(update=lambda n=1: self.updates.append(n))

    def __exit__(self, *exc):
        return None


class Metric:
    name, batch_size, info = "psnr", 2, {"v": "1"}

    def score(self, images, **inputs):
        return np.zeros(len(images))


def test_scoring_reports_each_metric_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(study_module, "_progress", Recorder)
    Recorder.made.clear()
    study = Study(StudyConfig(cache_dir=str(tmp_path)), progress=True)
    images = {
        p.id: types.SimpleNamespace(
            key=ImageKey("w", "none", "", "", "g", p.caption, p.seed, "{}", (16, 16), "{}"),
            image=Image.new("RGB", (16, 16)),
        )
        for p in PROMPTS
    }
    study._score(Metric(), images, PROMPTS, None)
    (bar,) = Recorder.made
    assert (bar.enabled, bar.total, bar.desc, bar.updates) == (True, 5, "score psnr", [2, 2, 1])
    study._score(Metric(), images, PROMPTS, None)  # all cached now: nothing to show
    assert Recorder.made[1].enabled is False and Recorder.made[1].updates == []
