"""The cost of a merge decision: a full study against baseline + sequential mode, case by case.

Each case is a planted fault or a no-op control: something with a ``name`` and an ``inject()`` context manager
(e.g. :class:`quantkit.faults.Fault`) inside which the affected variants' code, and so their image cache keys,
differ from main. For each case: (a) a full study of the profile's gates, whose cost is every image of the study
plus INT8's calibration prompts (what a CI runner with an empty cache generates); its verdict is computed on main's
warm cache, where an image whose key is unchanged is the very image a cold run would make, so only the affected
variants are generated again; (b) ``--baseline`` + ``--sequential`` against the baseline saved from the unfaulted
tree, from an empty image cache as a CI runner would, counting the images it really generates, calibration
included. Both must reach the same verdict; (b) should cost a fraction of (a)'s images.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from quantkit.baseline import load_baseline
from quantkit.merge_gate import run_gated
from quantkit.profiles import GateProfile
from quantkit.stats.sequential import DEFAULT_LOOKS


class Case(Protocol):
    name: str

    def inject(self) -> AbstractContextManager[Any]: ...


@dataclasses.dataclass(frozen=True)
class CaseCost:
    """One case's verdicts (True = passed) and images generated, in both modes."""

    name: str
    full_passed: bool
    full_images: int
    full_seconds: float
    gated_passed: bool
    gated_images: int
    gated_prompts: int
    gated_seconds: float
    status: dict[str, str]

    @property
    def agree(self) -> bool:
        return self.full_passed == self.gated_passed


def measure(
    cases: Iterable[Case],
    config: Any,
    profile: GateProfile,
    baseline_dir: str | Path,
    *,
    looks: int = DEFAULT_LOOKS,
    n_resamples: int = 10_000,
    allow_skip: tuple[str, ...] = (),
    work_dir: str | Path | None = None,
) -> list[CaseCost]:
    """Both modes on every case; ``config`` is the :class:`~quantkit.study.StudyConfig` the baseline was saved
    with, its cache folder warm with main's images (the gated runs get a fresh one each, under ``work_dir``)."""
    from quantkit.study import Study

    baseline = load_baseline(baseline_dir)
    costs = []
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        for index, case in enumerate(cases):
            with case.inject():
                start = time.perf_counter()
                full = Study(config, progress=False)
                table = full.score_all()
                verdict = profile.evaluate(table, allow_skip=allow_skip, n_resamples=n_resamples)
                full_seconds = time.perf_counter() - start
                gated = Study(
                    dataclasses.replace(config, cache_dir=str(Path(scratch) / f"{index}-gated")), progress=False
                )
                outcome = run_gated(
                    gated,
                    profile,
                    baseline,
                    sequential=True,
                    looks=looks,
                    n_resamples=n_resamples,
                    allow_skip=allow_skip,
                )
            costs.append(
                CaseCost(
                    name=case.name,
                    full_passed=verdict.failed == 0,
                    full_images=_full_cost(full),
                    full_seconds=full_seconds,
                    gated_passed=outcome.failed == 0,
                    gated_images=outcome.images_generated + outcome.calibration_images,
                    gated_prompts=outcome.prompts_used,
                    gated_seconds=outcome.seconds,
                    status=outcome.status,
                )
            )
    return costs


def _full_cost(study: Any) -> int:
    """What a full study generates from an empty cache: every variant's image of every prompt, plus the calibration
    prompts when a variant is calibrated (INT8)."""
    config = study.config
    calibrates = any(study.calibrates(name) for name in config.variants)
    return len(config.variants) * len(study.prompts) + (config.calibration_prompts if calibrates else 0)


def summary(costs: list[CaseCost]) -> str:
    """One line per case and the ratio of images generated, the figure the README projects GPU-hours from."""
    lines = [
        f"{c.name}: full {'pass' if c.full_passed else 'fail'} ({c.full_images} images), baseline+sequential "
        f"{'pass' if c.gated_passed else 'fail'} ({c.gated_images} images, {c.gated_prompts} prompts)"
        + ("" if c.agree else "  VERDICTS DIFFER")
        for c in costs
    ]
    full = sum(c.full_images for c in costs)
    gated = sum(c.gated_images for c in costs)
    ratio = gated / full if full else float("nan")
    lines.append(f"images: {gated} with baseline+sequential vs {full} full ({ratio:.3f} of the full cost)")
    return "\n".join(lines)
