"""INT8's quantization plan on a study's model, against its golden copy.

The plan is what calibration decided: which linears stay bf16 (fragility protection), each quantized linear's
SmoothQuant vector, and how many denoising steps the calibration observed per branch. A change there is a change
of the INT8 recipe even when the images barely move: on the tiny model SmoothQuant's alpha 0.5 -> 1.0 costs 0.36 dB
of PSNR, dropping the protection 0.02 dB, calibrating on the first quarter of the steps 0.01 dB, all inside the
fidelity gates' room, yet each is the kind of change a review must see. So, like the codecs' golden bytes, the plan
of the default study is golden (``golden/plans/``): ``quantkit sensitivity`` compares it in every profile run, a
unit test in the default suite, and ``quantkit golden plan --update`` rewrites it on purpose.

Which linears are quantized and the step counts must match exactly; the smoothing vectors within
:data:`SMOOTHING_TOLERANCE` (they are float functions of the calibration's activation maxima, which another CPU
may round differently in the last bits).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from quantkit import atomic
from quantkit.data import GOLDEN_DIR
from quantkit.errors import StoreError

VARIANT = "int8_w8a8"
PLANS_DIR = GOLDEN_DIR / "plans"
# Max relative difference of a smoothing factor: last-bit noise in activation maxima is ~1e-6 relative; alpha
# +0.1 moves factors by tens of percent.
SMOOTHING_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class Plan:
    """``layers``: linear -> "int8" or "kept" (both branches, full names); ``steps``: branch -> calibrated steps;
    ``smoothing``: int8 linear -> its SmoothQuant vector (absent: not smoothed)."""

    layers: dict[str, str]
    steps: dict[str, int]
    smoothing: dict[str, torch.Tensor]

    def save(self, path: Path, settings: dict[str, Any]) -> None:
        metadata = {
            "plan": json.dumps({"layers": self.layers, "steps": self.steps, "settings": settings}, sort_keys=True)
        }
        tensors = {name: vector.contiguous() for name, vector in self.smoothing.items()}
        atomic.write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))

    @classmethod
    def load(cls, path: Path) -> tuple[Plan, dict[str, Any]]:
        try:
            with safetensors.safe_open(path, framework="pt") as handle:
                recorded = json.loads((handle.metadata() or {})["plan"])
                smoothing = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - not a dict
        except Exception as exc:  # a truncated or foreign file: say which and how to rewrite it
            raise StoreError(
                f"cannot read the golden INT8 plan {path}: {exc}; rewrite it: quantkit golden plan --update"
            ) from exc
        return cls(recorded["layers"], recorded["steps"], smoothing), recorded["settings"]


def settings(config: Any) -> dict[str, Any]:
    """What the plan depends on besides the code: the model, the calibration prompts, sampler and resolution."""
    from quantkit.golden import profile_name

    return {
        "model": profile_name(config.model),
        "prompts": Path(config.prompts).stem,
        "calibration_prompts": config.calibration_prompts,
        "preset": config.preset,
        "resolution": list(config.resolution),
    }


def golden_path(config: Any) -> Path:
    s = settings(config)
    resolution = "x".join(map(str, s["resolution"]))
    return (
        PLANS_DIR / s["model"] / f"{s['prompts']}-cal{s['calibration_prompts']}-{s['preset']}-{resolution}.safetensors"
    )


def of(study: Any) -> Plan:
    """The plan of ``study``'s INT8 variant (built, and calibrated, if it is not yet)."""
    from quantkit.nn.w8a8 import W8A8Linear
    from quantkit.pipelines import BRANCHES

    pipe = study.variant(VARIANT).pipeline
    stats, _ = study.calibration()
    layers, smoothing = {}, {}
    for branch in BRANCHES:
        for name, module in getattr(pipe, branch).named_modules():
            full = f"{branch}.{name}"
            if isinstance(module, W8A8Linear):
                layers[full] = "int8"
                if module.smooth is not None:
                    smoothing[full] = module.smooth.detach().float().cpu()
            elif isinstance(module, torch.nn.Linear):
                layers[full] = "kept"
    return Plan(layers, {branch: stats.steps(branch) for branch in BRANCHES}, smoothing)


def problems(study: Any) -> list[str]:
    """How ``study``'s INT8 plan differs from the golden one (empty: the same, or no golden plan for its settings,
    or no INT8 variant in the study)."""
    if VARIANT not in study.config.variants:
        return []
    path = golden_path(study.config)
    if not path.is_file():
        return []
    golden, _ = Plan.load(path)
    return compare(of(study), golden)


def compare(plan: Plan, golden: Plan) -> list[str]:
    found = []
    moved = sorted(n for n in golden.layers.keys() | plan.layers.keys() if golden.layers.get(n) != plan.layers.get(n))
    if moved:
        first = moved[0]
        found.append(
            f"int8 plan linears: {len(moved)} linear(s) treated otherwise, e.g. {first} "
            f"{golden.layers.get(first, 'absent')} -> {plan.layers.get(first, 'absent')}"
        )
    if plan.steps != golden.steps:
        found.append(f"int8 plan steps: calibrated steps {plan.steps}, golden {golden.steps}")
    unmatched = sorted(
        n
        for n in golden.smoothing.keys() | plan.smoothing.keys()
        if n not in golden.smoothing or n not in plan.smoothing or golden.smoothing[n].shape != plan.smoothing[n].shape
    )
    if unmatched:
        found.append(f"int8 plan smoothing: {len(unmatched)} vector(s) added, dropped or reshaped, e.g. {unmatched[0]}")
    errors = {
        name: float(((plan.smoothing[name].double() - old.double()).abs() / old.double().abs()).max())
        for name, old in golden.smoothing.items()
        if name not in unmatched
    }
    worst = max(errors, key=errors.__getitem__, default=None)
    if worst is not None and errors[worst] > SMOOTHING_TOLERANCE:
        found.append(
            f"int8 plan smoothing: {worst} off the golden by {errors[worst]:.1e} (allowed {SMOOTHING_TOLERANCE:.0e})"
        )
    return found


def record(study: Any) -> Path:
    """Write the golden plan of ``study``'s settings (an intended change of the INT8 recipe or calibration)."""
    path = golden_path(study.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    of(study).save(path, settings(study.config))
    return path
