"""How sensitive the gate profile is: every planted fault (:mod:`quantkit.faults`) and no-op controls, each run
through the same profile run, tabulated as caught or not, by which check, with images generated and wall time.

A *profile run* is what a merge gate does: the study's scores evaluated against the gate profile, plus the golden
checks that bound the harness itself: the reference's images against the golden set (pixel-exact in the recording
environment), the reference's scores against the golden scores (when the images are exact), the codecs' golden
bytes (:mod:`quantkit.codec_digests`), the layers' and the text metric's contracts (:mod:`quantkit.contracts`),
INT8's golden plan (:mod:`quantkit.int8_plan`), and a fidelity score of "identical" only for identical images. A
fault is *caught* when any of these fails (or the run raises); a control is a *false alarm* when any fails.
Controls change nothing a result should depend on: a rerun from the warm cache with another bootstrap seed, a cold
cache, the prompts in another order, the prompt set sharded and the shards' scores merged, and the gate suites
under pytest-xdist.

All runs share one image cache, so a fault regenerates only its own variants' images (its code identity is salted).
Results are written after every run (JSON, Markdown, HTML in ``out``), so an interrupted sweep keeps what it measured.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from quantkit import atomic
from quantkit.errors import QuantkitError
from quantkit.faults import CATALOGUE, Fault

CONTROLS = ("rerun", "prompt_order", "sharded", "cold_cache", "xdist")
SLOW_CONTROLS = ("cold_cache", "xdist")  # regenerate every image / start pytest workers
# The fast subset: one fault per stage that runs in seconds on a warm cache (`--quick`, the default-suite test).
QUICK_FAULTS = ("int8_scale", "q4_k_no_refinement", "fidelity_reference", "ocr_case")
IDENTITY_SCORES = {"psnr": 100.0, "ssim": 1.0, "lpips": 0.0}  # what each fidelity metric gives identical images
GATE_SUITES = ("test_suites/fidelity/test_fidelity_gates.py", "test_suites/ocr/test_ocr_gates.py")


class RunResult(NamedTuple):
    failed: tuple[str, ...]
    images: int
    table: Any = None  # the run's ScoreTable when it got as far as scoring (kept to re-check a retuned profile)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One profile run: a fault at a severity, a control, or the unfaulted baseline."""

    kind: str  # "baseline" | "fault" | "control"
    name: str
    severity: float | None
    failed: tuple[str, ...]  # the checks that failed: gate descriptions, "golden images", "codec bytes: q4_k", ...
    images: int  # images generated (not read from the cache)
    seconds: float
    error: str | None = None  # the run raised (a fault that crashes the study is caught)

    @property
    def alarm(self) -> bool:
        return bool(self.failed) or self.error is not None


@dataclasses.dataclass
class Sweep:
    """Everything measured, in run order; the tables below are computed from it."""

    profile: str
    settings: dict[str, Any]
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def faults(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == "fault"]

    def controls(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == "control"]

    def must_catch(self) -> dict[str, Outcome | None]:
        """fault -> its run at the must-catch severity (None if not run)."""
        runs = {(o.name, o.severity): o for o in self.faults()}
        return {name: runs.get((name, f.must_catch)) for name, f in CATALOGUE.items() if _ran(self, name)}

    def minimal_caught(self) -> dict[str, float | None]:
        """fault family -> smallest severity caught, over its faults (None: never caught)."""
        result: dict[str, float | None] = {}
        for outcome in self.faults():
            family = CATALOGUE[outcome.name].family
            result.setdefault(family, None)
            if outcome.alarm and (result[family] is None or outcome.severity < result[family]):
                result[family] = outcome.severity
        return result

    def summary(self) -> dict[str, Any]:
        must = self.must_catch()
        return {
            "caught_at_must_catch": sum(1 for o in must.values() if o is not None and o.alarm),
            "faults_run_at_must_catch": sum(1 for o in must.values() if o is not None),
            "faults": len(must),
            "false_alarms": sum(1 for o in self.controls() if o.alarm),
            "control_runs": len(self.controls()),
            "images_generated": sum(o.images for o in self.outcomes),
            "wall_seconds": round(self.seconds, 1),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "settings": self.settings,
            "summary": self.summary(),
            "minimal_caught_severity": self.minimal_caught(),
            "faults": {
                name: {k: v for k, v in dataclasses.asdict(f).items() if k not in ("patch", "probe")}
                for name, f in CATALOGUE.items()
            },
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes],
        }


def load(path: Path) -> Sweep:
    """A sweep back from its ``sensitivity.json`` (to combine sweeps run apart, e.g. controls and faults)."""
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    outcomes = [Outcome(**{**o, "failed": tuple(o["failed"])}) for o in data["outcomes"]]
    return Sweep(data["profile"], data["settings"], outcomes, data["summary"]["wall_seconds"])


def combine(sweeps: Sequence[Sweep]) -> Sweep:
    """One sweep of several run side by side on the same settings: their runs, one baseline, the longest wall time."""
    first = sweeps[0]
    if any(s.profile != first.profile or s.settings != first.settings for s in sweeps):
        raise QuantkitError("only sweeps of the same profile and settings can be combined")
    outcomes = [o for s in sweeps for o in s.outcomes if o.kind != "baseline"]
    baseline = [o for o in first.outcomes if o.kind == "baseline"]
    return Sweep(first.profile, first.settings, baseline + outcomes, max(s.seconds for s in sweeps))


def _ran(sweep: Sweep, name: str) -> bool:
    return any(o.name == name for o in sweep.faults())


# -- one profile run ------------------------------------------------------------------------------------------------


def profile_run(study: Any, profile: Any, *, n_resamples: int, seed: int = 0, exhaustive: bool = False) -> RunResult:
    """(the failed checks, images generated) of checking ``study`` as a merge gate would, cheapest check first:
    the codecs' golden bytes and the layers' and text metric's contracts (no image), the reference against its
    golden images and scores (reference images only), INT8's plan against the golden plan (calibration only), then
    the profile's gates (every variant). Unless ``exhaustive``, the first failing stage ends the run: a
    merge gate stops there, and a sweep stays affordable."""
    from quantkit import codec_digests, contracts, int8_plan

    failed, table = _labels(codec_digests.check() + contracts.check()), None
    if not failed or exhaustive:
        failed += _golden_problems(study, profile)
    if not failed or exhaustive:
        failed += _labels(int8_plan.problems(study))
    if not failed or exhaustive:
        table = study.score_all()
        failed += _identity_problems(study)
        results = profile.evaluate(table, n_resamples=n_resamples, seed=seed)
        failed += [v.gate.describe() for v in results.verdicts if not v.passed]
        failed += [f"skip refused: {s.gate['metric']} {s.gate['variant']}" for s in results.skipped if not s.allowed]
        if not results.verdicts:
            failed.append("no gate evaluated")
    return RunResult(tuple(failed), _generated(study), table)


def _labels(problems: list[str]) -> list[str]:
    """Each failed check once, by the label before its colon ("codec q4_k", "layer int8_w8a8", "int8 plan steps")."""
    return list(dict.fromkeys(line.split(":")[0] for line in problems))


def _generated(study: Any) -> int:
    return sum(1 for images in study._images.values() for g in images.values() if not g.cached)


def _identity_problems(study: Any) -> list[str]:
    """A fidelity score of "identical to the reference" (PSNR at its cap, SSIM 1, LPIPS 0) for an image that is not
    the reference's pixel for pixel: the metric compared something else (a harness bug no one-sided gate sees, as it
    only makes a variant look better)."""
    import numpy as np

    config = study.config
    reference = study.images(config.reference)
    problems = []
    for variant, metrics in study.table.values.items():
        if variant == config.reference:
            continue
        for metric, perfect in IDENTITY_SCORES.items():
            for pid, value in metrics.get(metric, {}).items():
                same = np.array_equal(np.asarray(study.images(variant)[pid].image), np.asarray(reference[pid].image))
                if math.isclose(value, perfect, abs_tol=1e-9) and not same and f"{metric} identity" not in problems:
                    problems.append(f"{metric} identity")
    return problems


def _golden_problems(study: Any, profile: Any) -> list[str]:
    """The reference's images against the golden set and, when they are exact, its scores against the golden
    scores (a harness fault changes scores of unchanged images). No golden set for this selection: no check."""
    from quantkit.golden import golden_set
    from quantkit.store import golden

    config = study.config
    if config.shard is not None:  # a shard holds part of the set; the merged run is checked as a whole
        return []
    gold = golden_set(config)
    if not (gold.dir / golden.MANIFEST).is_file():
        return []
    images = {pid: g.image for pid, g in study.images(config.reference).items()}
    check = golden.compare(gold, images, tolerance=profile.golden_tolerance)
    if not check.passed:
        return ["golden images"]
    if check.changes:
        return []
    recorded = golden.load_scores(gold)
    measured = study.scores(config.reference)
    for pid, values in recorded.items():
        for metric, value in values.items():
            now = measured.get(metric, {}).get(pid)
            if now is not None and not math.isclose(now, value, abs_tol=1e-9):
                return ["golden scores"]
    return []


# -- controls --------------------------------------------------------------------------------------------------------


class _Reordered:
    """A study whose prompt list is permuted (seeded): scores and verdicts must not depend on the order."""

    @staticmethod
    def make(config: Any, seed: int) -> Any:
        from quantkit.study import Study

        class Reordered(Study):
            @functools.cached_property
            def prompts(self) -> list[Any]:
                prompts = list(Study.prompts.func(self))
                random.Random(seed).shuffle(prompts)
                return prompts

        return Reordered(config, progress=False)


def _sharded(config: Any, profile: Any, shards: int, n_resamples: int, seed: int) -> RunResult:
    """Score each of ``shards`` shards on its own, merge the tables, check the merged table."""
    from quantkit import codec_digests, contracts, int8_plan
    from quantkit.study import Study

    table, generated, part = None, 0, None
    for index in range(1, shards + 1):
        part = Study(dataclasses.replace(config, shard=(index, shards)), progress=False)
        scored = part.score_all()
        table = scored if table is None else table.merge(scored)
        generated += _generated(part)
    results = profile.evaluate(table, n_resamples=n_resamples, seed=seed)
    failed = [v.gate.describe() for v in results.verdicts if not v.passed]
    failed += [f"skip refused: {s.gate['metric']} {s.gate['variant']}" for s in results.skipped if not s.allowed]
    failed += _labels(codec_digests.check() + contracts.check() + int8_plan.problems(part))
    return RunResult(tuple(failed), generated, table)


def _xdist(config: Any, profile: Any) -> RunResult:
    """The gate suites under pytest-xdist (two workers, each with its own study on the shared cache)."""
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", *GATE_SUITES]
    argv += ["--gates", profile.name, "--prompt-limit", str(config.prompt_limit or 10)]
    env = {**os.environ, "QUANTKIT_CACHE": str(config.cache_dir), "QUANTKIT_NO_PROGRESS": "1"}
    run = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
    return RunResult(() if run.returncode == 0 else (f"pytest -n 2 exit {run.returncode}",), 0)


def _control(kind: str, index: int, config: Any, profile: Any, n_resamples: int) -> RunResult:
    from quantkit.study import Study

    if kind == "rerun":
        return profile_run(Study(config, progress=False), profile, n_resamples=n_resamples, seed=index)
    if kind == "prompt_order":
        return profile_run(_Reordered.make(config, index), profile, n_resamples=n_resamples, seed=index)
    if kind == "sharded":
        return _sharded(config, profile, 2 + index % 2, n_resamples, index)
    if kind == "cold_cache":
        with tempfile.TemporaryDirectory(prefix="quantkit-cold-") as cold:
            study = Study(dataclasses.replace(config, cache_dir=cold), progress=False)
            return profile_run(study, profile, n_resamples=n_resamples, seed=index)
    if kind == "xdist":
        return _xdist(config, profile)
    raise QuantkitError(f"unknown control {kind!r}; known: {', '.join(CONTROLS)}")


def control_plan(count: int, *, expensive: bool = True) -> list[str]:
    """``count`` control runs: one of each slow kind (cold cache, xdist) when asked, the rest cycling through the
    cheap ones (rerun, prompt order, sharded), which read the warm cache."""
    kinds = [k for k in SLOW_CONTROLS if expensive][:count]
    cheap = ("rerun", "prompt_order", "sharded")
    return kinds + [cheap[i % len(cheap)] for i in range(count - len(kinds))]


# -- the sweep -------------------------------------------------------------------------------------------------------


def fault_plan(names: Iterable[str], *, severities: str = "all") -> list[tuple[Fault, float]]:
    """(fault, severity) runs: every fault at its must-catch severity first, then (``"all"``) the rest of each
    graded fault's sweep, so an interrupted sweep has answered the must-catch question."""
    faults = [_known(name) for name in names]
    plan = [(f, f.must_catch) for f in faults]
    if severities == "all":
        plan += [(f, s) for f in faults for s in f.severities if s != f.must_catch]
    return plan


def _known(name: str) -> Fault:
    from quantkit.profiles import closest

    if name not in CATALOGUE:
        raise QuantkitError(f"unknown fault {name!r}{closest(name, CATALOGUE)}")
    return CATALOGUE[name]


def run_sweep(
    config: Any,
    profile: Any,
    *,
    faults: Sequence[str] = tuple(CATALOGUE),
    severities: str = "all",
    controls: int = 20,
    expensive_controls: bool = True,
    n_resamples: int = 10_000,
    exhaustive: bool = False,
    out: Path | None = None,
    progress: bool = True,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Sweep:
    """The baseline run, the controls, then every fault run; ``out`` gets the report after every run. A fault run
    stops at its first failing stage unless ``exhaustive`` (see :func:`profile_run`)."""
    from tqdm import tqdm

    from quantkit.study import Study

    sweep = Sweep(profile.name, {**config.settings_dict(), "variants": list(config.variants)})
    baseline = (
        "baseline",
        "unfaulted",
        None,
        functools.partial(profile_run, Study(config, progress=False), profile, n_resamples=n_resamples),
    )
    controls_ = [
        ("control", kind, None, functools.partial(_control, kind, index, config, profile, n_resamples))
        for index, kind in enumerate(control_plan(controls, expensive=expensive_controls))
    ]
    plan = fault_plan(faults, severities=severities)
    fault_runs = [
        ("fault", f.name, sev, functools.partial(_faulted, f, sev, config, profile, n_resamples, exhaustive))
        for f, sev in plan
    ]
    # Cheap controls, then every fault at its must-catch severity, then the slow controls and the rest of the sweep:
    # an interrupted sweep has answered the main questions first.
    cheap = [r for r in controls_ if r[1] not in SLOW_CONTROLS]
    must = [r for r in fault_runs if r[2] == CATALOGUE[r[1]].must_catch]
    rest = [r for r in fault_runs if r[2] != CATALOGUE[r[1]].must_catch]
    runs = [baseline, *cheap, *must, *[r for r in controls_ if r[1] in SLOW_CONTROLS], *rest]
    start = time.perf_counter()
    bar = tqdm(
        runs, desc="sensitivity", unit="run", disable=not progress or bool(os.environ.get("QUANTKIT_NO_PROGRESS"))
    )
    for kind, name, severity, run in bar:
        bar.set_postfix_str(f"{name}" + ("" if severity is None else f"@{severity:g}"))
        began = time.perf_counter()
        try:
            (failed, images, table), error = run(), None
        except QuantkitError as err:
            failed, images, table, error = (), 0, None, str(err)
        outcome = Outcome(kind, name, severity, failed, images, round(time.perf_counter() - began, 2), error)
        if kind == "baseline" and outcome.alarm:
            raise QuantkitError(
                f"the unfaulted run already fails ({', '.join(failed) or error}): fix that before measuring faults"
            )
        sweep.outcomes.append(outcome)
        sweep.seconds = time.perf_counter() - start
        if on_outcome is not None:
            on_outcome(outcome)
        if out is not None:
            write(sweep, out)
            if table is not None:
                label = name if severity is None else f"{name}@{severity:g}"
                table.save(Path(out) / "tables" / f"{len(sweep.outcomes):03d}-{label}.json")
    return sweep


def _faulted(fault: Fault, severity: float, config: Any, profile: Any, n_resamples: int, exhaustive: bool) -> RunResult:
    from quantkit.study import Study

    with fault.inject(severity):
        return profile_run(Study(config, progress=False), profile, n_resamples=n_resamples, exhaustive=exhaustive)


# -- reports ---------------------------------------------------------------------------------------------------------


def _tables(sweep: Sweep) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table of the report, shared by the Markdown and the HTML."""
    faults = []
    for o in sorted(sweep.faults(), key=lambda o: (o.name, o.severity)):
        f = CATALOGUE[o.name]
        must = "yes" if o.severity == f.must_catch else ""
        by = o.error or ", ".join(o.failed) or "-"
        faults.append(
            [o.name, f.stage, f.effect, f"{o.severity:g}", must, "yes" if o.alarm else "NO", by, str(o.images)]
        )
        faults[-1].append(f"{o.seconds:.0f}")
    families = [[family, "not caught" if v is None else f"{v:g}"] for family, v in sweep.minimal_caught().items()]
    controls = [
        [o.name, "YES" if o.alarm else "no", o.error or ", ".join(o.failed) or "-", str(o.images), f"{o.seconds:.0f}"]
        for o in sweep.outcomes
        if o.kind != "fault"
    ]
    catalogue = [
        [f.name, f.stage, f.family, ", ".join(f.variants) or "(scores)", f.description, f"{f.must_catch:g}"]
        for f in CATALOGUE.values()
    ]
    return [
        ("Faults", ["fault", "stage", "effect", "severity", "must catch", "caught", "by", "images", "seconds"], faults),
        ("Minimal caught severity per family", ["family", "minimal caught severity"], families),
        (
            "Controls (no-op: every alarm is a false alarm)",
            ["control", "alarm", "failed", "images", "seconds"],
            controls,
        ),
        ("Catalogue", ["fault", "stage", "family", "changes", "description", "must catch"], catalogue),
    ]


def _headline(sweep: Sweep) -> list[str]:
    s = sweep.summary()
    return [
        f"faults caught at their must-catch severity: {s['caught_at_must_catch']} / {s['faults_run_at_must_catch']} "
        f"({s['faults']} faults run)",
        f"false alarms on no-op controls: {s['false_alarms']} / {s['control_runs']}",
        f"images generated: {s['images_generated']}; wall time: {s['wall_seconds']:.0f} s",
        f"settings: {sweep.settings}",
    ]


def markdown(sweep: Sweep) -> str:
    lines = [f"# Sensitivity of gate profile `{sweep.profile}`", ""] + [f"- {line}" for line in _headline(sweep)]
    for title, header, rows in _tables(sweep):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html(sweep: Sweep) -> str:
    from html import escape

    parts = [
        "<!doctype html><meta charset=utf-8><title>sensitivity</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse}</style>",
        f"<h1>Sensitivity of gate profile {escape(sweep.profile)}</h1><ul>",
        *[f"<li>{escape(line)}</li>" for line in _headline(sweep)],
        "</ul>",
    ]
    for title, header, rows in _tables(sweep):
        parts.append(
            f"<h2>{escape(title)}</h2><table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    return "\n".join(parts) + "\n"


def write(sweep: Sweep, out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "sensitivity.json", sweep.to_json())
    atomic.write_text(out / "sensitivity.md", markdown(sweep))
    atomic.write_text(out / "sensitivity.html", html(sweep))
