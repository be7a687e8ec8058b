"""The paper's two ablations as studies: what each part of the INT8 recipe buys, and what JSON captions buy.

``int8``: naive W8A8, SmoothQuant only, protection only, both (the published recipe), and the protection ladder
(k = 0, 1/4, 1/2 and all of the FFN down-projections per branch, with SmoothQuant). The real model's 8 and 17 of 34
``feed_forward.w2`` map proportionally onto a smaller model (rounded, duplicates dropped); the protected ones are the
most fragile w2 by the calibration's ranking. Every arm is scored against the FP8 reference like a study variant
(paired CIs for quality and text, fidelity per image against the reference's image).

``prompts``: the same prompts, ids and seeds, once as their raw strings and once as the JSON captions the model was
trained on; per variant, OCR EM / NED and quality, with the paired difference raw - JSON.

Both run through :class:`~quantkit.study.Study`, so images, calibration and scores come from the cache when they can.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quantkit.errors import StatsError
from quantkit.study import FIDELITY_METRICS, Study, StudyConfig, Variant, apply_recipe

LADDER = (("k=0", 0.0), ("k=1/4", 8 / 34), ("k=1/2", 17 / 34), ("k=all", 1.0))


@dataclasses.dataclass(frozen=True)
class Arm:
    """One ablation row: a recipe, whether SmoothQuant vectors come from the calibration, how many w2 are kept."""

    name: str
    recipe: Any
    smooth: bool
    protected: int = 0


def int8_arms(w2: Mapping[str, Sequence[str]]) -> list[Arm]:
    """The INT8 ablation arms for a model whose FFN down-projections, most fragile first, are ``w2`` (branch ->
    names). Protection keeps the published 17/34 of them per branch; the ladder 0, 8/34, 17/34 and all."""
    from quantkit.recipes import Int8W8A8

    count = min(len(names) for names in w2.values())

    def most_fragile(k: int) -> tuple[str, ...]:
        return tuple(f"{b}.{n}" if len(w2) > 1 else n for b, names in w2.items() for n in names[:k])

    published = round(count * 17 / 34)
    arms = [
        Arm("naive", Int8W8A8(alpha=0.0), smooth=False),
        Arm("smoothquant", Int8W8A8(alpha=0.5), smooth=True),
        Arm("protect", Int8W8A8(alpha=0.0, protect=most_fragile(published)), smooth=False, protected=published),
        Arm("both", Int8W8A8(alpha=0.5, protect=most_fragile(published)), smooth=True, protected=published),
    ]
    seen = {(a.smooth, a.protected) for a in arms}
    for label, fraction in LADDER:
        k = round(count * fraction)
        if (True, k) not in seen:  # on a small model two rungs can round to the same k
            seen.add((True, k))
            arms.append(Arm(f"ladder {label}", Int8W8A8(alpha=0.5, protect=most_fragile(k)), True, k))
    return arms


class Int8Ablation(Study):
    """A study whose variants are the INT8 ablation arms (plus the reference)."""

    @functools.cached_property
    def arms(self) -> dict[str, Arm]:
        from quantkit.calibrate.fragility import rank_fragility

        stats, _ = self.calibration()
        ranking = rank_fragility(stats)
        w2 = {b: [e.name for e in entries if e.name.endswith("feed_forward.w2")] for b, entries in ranking.items()}
        return {a.name: a for a in int8_arms(w2)}

    @property
    def names(self) -> list[str]:
        return [self.config.reference, *self.arms]

    def _build(self, name: str) -> Variant:
        if name == self.config.reference:
            return super()._build(name)
        arm = self.arms[name]
        pipe = self._load_pipeline()
        if not arm.smooth:
            return Variant(name, arm.recipe, pipe, apply_recipe(pipe, arm.recipe))
        stats, identity = self.calibration()  # the identity keys the arm's images, as a study variant's
        return Variant(name, arm.recipe, pipe, apply_recipe(pipe, arm.recipe, stats), calibration=identity)


def run_int8(config: StudyConfig, *, out_dir: Path, n_resamples: int = 10_000, progress: bool = True) -> str:
    """Run the INT8 ablation; write ``ablate-int8.md`` and ``ablate-int8.png`` to ``out_dir``; return the table."""
    from quantkit.report.summary import format_table, summarize

    study = Int8Ablation(config, progress=progress)
    for name in study.names:
        study.scores(name)
    cells = summarize(study.table, reference=config.reference, variants=study.names, n_resamples=n_resamples)
    facts = {name: study.facts(name) for name in study.names}
    rows = {name: _recipe_text(study.arms[name]) for name in study.arms}
    text = format_table(cells, facts) + "\n" + "\n".join(f"{n}: {r}" for n, r in rows.items())
    text += _not_measured(study)
    png = _ladder_png(study, cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    from quantkit.atomic import write_bytes, write_text

    if png is not None:
        write_bytes(out_dir / "ablate-int8.png", png)
    markdown = format_table(cells, facts, markdown=True)
    plot = "\n\n![protection ladder](ablate-int8.png)\n" if png is not None else ""
    write_text(out_dir / "ablate-int8.md", f"# INT8 ablation: {config.model}\n\n{markdown}\n\n```\n{text}\n```{plot}")
    return text


def _recipe_text(arm: Arm) -> str:
    smooth = "SmoothQuant alpha=0.5" if arm.smooth else "no SmoothQuant"
    return f"{smooth}, {arm.protected} most fragile feed_forward.w2 per branch kept in bf16"


def _not_measured(study: Study) -> str:
    missing = study.table.not_measured
    return "".join(f"\nnot measured: {m}: {r}" for m, r in missing.items())


def _ladder_png(study: Int8Ablation, cells: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """The fidelity metric (first of PSNR, SSIM, LPIPS measured) against k protected, with 95% CIs; the arms without
    SmoothQuant as separate markers."""
    metric = next((m for m in FIDELITY_METRICS if any(m in r and r[m].n for r in cells.values())), None)
    if metric is None:
        return None
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for smooth, marker, label in ((True, "o-", "SmoothQuant + protection"), (False, "s", "no SmoothQuant")):
        arms = sorted((a.protected, a.name) for a in study.arms.values() if a.smooth == smooth)
        ks = [k for k, _ in arms]
        cell = [cells[name][metric] for _, name in arms]
        means = [c.mean for c in cell]
        errors = None
        if all(c.ci is not None for c in cell):
            errors = [[c.mean - c.ci.low for c in cell], [c.ci.high - c.mean for c in cell]]
        ax.errorbar(ks, means, yerr=errors, fmt=marker, capsize=3, label=label)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("feed_forward.w2 kept in bf16 per branch (k)")
    ax.set_ylabel(f"{metric.upper()} vs the FP8 reference (mean, 95% CI)")
    ax.set_title("INT8 W8A8: protection ladder")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


# -- raw strings vs JSON captions ------------------------------------------------------------------------------------


class RawPromptStudy(Study):
    """The study's prompts with their raw strings fed to the model instead of the JSON captions (ids, seeds, OCR
    targets unchanged, so every score pairs with the caption run's)."""

    @functools.cached_property
    def prompts(self) -> list[Any]:  # type: ignore[override]
        return [dataclasses.replace(p, caption=p.raw) for p in Study.prompts.func(self)]  # type: ignore[attr-defined]

    def calibration(self) -> tuple[Any, str]:
        return self._captions.calibration()  # INT8 is calibrated on JSON captions in both arms, as it ships

    @functools.cached_property
    def _captions(self) -> Study:
        return Study(self.config, progress=self.progress)


def run_prompts(config: StudyConfig, *, n_resamples: int = 10_000, progress: bool = True) -> str:
    """Per variant, each non-fidelity metric under JSON captions and raw strings, with the paired difference."""
    from quantkit.stats import paired_bootstrap

    metrics = tuple(m for m in config.metrics if m not in FIDELITY_METRICS)
    config = dataclasses.replace(config, metrics=metrics)
    json_study = Study(config, progress=progress)
    raw_study = RawPromptStudy(config, progress=progress)
    lines = [
        f"{'variant':<10} {'metric':<10} {'JSON caption':>12} {'raw string':>11}   raw - JSON [95% CI] (paired, n)"
    ]
    for name in config.variants:
        json_scores, raw_scores = json_study.scores(name), raw_study.scores(name)
        for metric in metrics:
            if metric not in json_scores:
                continue
            a, b = json_scores[metric], raw_scores[metric]
            try:
                ci = paired_bootstrap(
                    b, a, metric=metric, variant_name="raw", reference_name="json", n_resamples=n_resamples
                )
                paired = f"{ci.mean_diff:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}] ({ci.method}, n={ci.n})"
            except StatsError as error:
                paired = f"no CI: {error}"
            lines.append(f"{name:<10} {metric:<10} {_mean(a):>12.4f} {_mean(b):>11.4f}   {paired}")
    return "\n".join(lines) + _not_measured(json_study)


def _mean(values: Mapping[str, float] | Sequence[float]) -> float:
    data = list(values.values()) if isinstance(values, Mapping) else list(values)
    return sum(data) / len(data)
