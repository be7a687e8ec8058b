"""A study: every variant of one model, generated on one prompt set, scored per prompt, compared with the reference.

The CLI (``quantkit study``), the pytest plugin's fixtures and the report are thin shells over :class:`Study`.
Everything is lazy and memoised: a variant is quantized the first time something asks for it, its images come from
the content-addressed cache when they can, and a score is computed once per (image, metric, reference image).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from quantkit.errors import CheckpointError, QuantkitError, UsageError
from quantkit.metrics import catalog
from quantkit.prompts.benchmark import CALIBRATION_SPLIT
from quantkit.prompts.prompt import Prompt
from quantkit.recipes import Recipe, default_variants, known_variants, variant_spec
from quantkit.scores import ScoreTable

if TYPE_CHECKING:
    from diffusers import Ideogram4Pipeline
    from tqdm import tqdm

    from quantkit.calibrate.stats import CalibrationStats
    from quantkit.gguf_variant import GGUFFiles
    from quantkit.metrics.registry import Metric
    from quantkit.pipelines.ideogram4 import GeneratedImage, SamplerSettings
    from quantkit.quantize import SkipReport
    from quantkit.report.summary import VariantFacts
    from quantkit.store.cache import ImageCache, ImageKey

# The variants a study runs when given none (registered with default=True); any registered variant can be asked for.
DEFAULT_VARIANTS = default_variants()
QUALITY_METRICS = catalog.names("quality")
TEXT_METRICS = catalog.names("text")
FIDELITY_METRICS = catalog.names("fidelity")
METRICS = catalog.names()
REAL_RESOLUTION = (1024, 1024)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """What a study runs. ``model`` is ``"tiny"`` (the embedded default) or a local diffusers-layout Ideogram 4
    folder; ``shard=(i, n)`` keeps the i-th of n interleaved slices of the prompt set (1-based) for CI sharding."""

    model: str = "tiny"
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    reference: str = "fp8"
    prompts: str = "benchmark-v1"
    prompt_limit: int | None = None
    categories: tuple[str, ...] | None = None
    shard: tuple[int, int] | None = None
    preset: str = "TINY_TEXT"
    resolution: tuple[int, int] = (128, 128)
    device: str = "cpu"
    offload: str = "none"
    metrics: tuple[str, ...] = METRICS
    calibration_prompts: int = 4
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        """Every name and number a user types is checked here, before any work starts."""
        from quantkit.gguf_variant import is_gguf_spec
        from quantkit.pipelines.ideogram4 import PRESETS
        from quantkit.profiles import closest

        for kind, names, known in (
            ("variant", [v for v in self.variants if not is_gguf_spec(v)], known_variants()),
            ("metric", self.metrics, METRICS),
            ("sampler preset", (self.preset,), tuple(PRESETS)),
        ):
            for name in names:
                if name not in known:
                    raise UsageError(f"unknown {kind} {name!r}{closest(name, known)}")
        if not self.variants or not self.metrics:
            raise UsageError("a study needs at least one variant and one metric")
        if self.reference not in self.variants:
            raise UsageError(f"reference variant {self.reference!r} is not among the variants {self.variants}")
        if self.prompt_limit is not None and self.prompt_limit < 1:
            raise UsageError(f"prompt limit must be a positive number of prompts, got {self.prompt_limit}")
        if not 1 <= self.calibration_prompts <= CALIBRATION_SPLIT:
            raise UsageError(f"calibration_prompts must be 1 to {CALIBRATION_SPLIT} (the calibration split's size)")
        if self.shard is not None:
            index, count = self.shard
            if not 1 <= index <= count:
                raise UsageError(f"shard {index}/{count}: the index must be between 1 and the shard count")

    @classmethod
    def for_model(cls, model: str | None = None, **overrides: object) -> StudyConfig:
        """The study of ``model`` with its defaults (:func:`model_defaults`: prompt limit, sampler preset and
        resolution; the device is CUDA when available), then ``overrides``; an override that is None keeps the
        default. ``model`` None is ``$QUANTKIT_IDEOGRAM4_DIR``, else the embedded tiny model. Every shell (the CLI,
        ``quantkit golden``, the pytest plugin) builds its configuration here."""
        from quantkit.pipelines.ideogram4 import WEIGHTS_ENV

        model = model or os.environ.get(WEIGHTS_ENV) or "tiny"
        given = {name: value for name, value in overrides.items() if value is not None}
        return cls(model=model, **{**model_defaults(model), "device": default_device(), **given})

    @property
    def gate_profile(self) -> str:
        """The gate profile a study of this model is held to by default."""
        return "tiny" if self.model == "tiny" else "ideogram4"

    def settings_dict(self) -> dict[str, object]:
        """The settings that decide every number of the study, recorded with its results."""
        return {
            "model": self.model,
            "reference": self.reference,
            "prompts": self.prompts,
            "prompt_limit": self.prompt_limit,
            "categories": self.categories,
            "preset": self.preset,
            "resolution": list(self.resolution),
            "device": self.device,
        }


def model_defaults(model: str) -> dict[str, object]:
    """What a study of ``model`` runs unless told otherwise: the embedded tiny models a small study (the trained
    default with its text-capable sampler, the random one with the smoke sampler); real weights the published
    protocol (every prompt, V4_QUALITY_48 at 1024x1024)."""
    from quantkit.pipelines.ideogram4 import EMBEDDED_PRESETS, TINY_RESOLUTION

    if model in EMBEDDED_PRESETS:
        return {"prompt_limit": 10, "preset": EMBEDDED_PRESETS[model], "resolution": TINY_RESOLUTION}
    return {"prompt_limit": None, "preset": "V4_QUALITY_48", "resolution": REAL_RESOLUTION}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def apply_recipe(
    pipe: Ideogram4Pipeline, recipe: Recipe | GGUFFiles, calibration: CalibrationStats | None = None
) -> SkipReport:
    """Turn a freshly loaded pipeline into the variant ``recipe`` describes, in place: quantized (``quantize_``), or
    for a ``gguf:`` file set, its transformers loaded from the files. The one way every caller builds a variant."""
    from quantkit.gguf_variant import GGUFFiles
    from quantkit.quantize import quantize_

    if isinstance(recipe, GGUFFiles):  # loaded from its files, not quantized
        return recipe.apply(pipe)
    return quantize_(pipe, recipe, calibration)


def recipe_for(name: str) -> Recipe | GGUFFiles:
    """The study's recipe for a variant name: the registered (published) configuration, or a ``gguf:`` file set."""
    from quantkit.gguf_variant import GGUFFiles, is_gguf_spec

    if is_gguf_spec(name):  # a GGUF file set run as it is (quantkit.gguf_variant)
        return GGUFFiles.parse(name)
    return variant_spec(name).recipe()


@dataclasses.dataclass
class Variant:
    """What a fixture yields: a named recipe applied to a pipeline, with the report of what it quantized."""

    name: str
    recipe: Recipe | GGUFFiles
    pipeline: Ideogram4Pipeline
    report: SkipReport | None = None
    calibration: str = ""  # identity of the calibration it was quantized with ("" if none): part of its image keys


class Study:
    def __init__(self, config: StudyConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self._variants: dict[str, Variant] = {}
        self._images: dict[str, dict[str, GeneratedImage]] = {}
        self.table = ScoreTable()
        self.calibration_images = 0  # prompts generated to calibrate (0 when read from the cache): a run's cost

    # -- inputs ---------------------------------------------------------------------------------------------------
    @functools.cached_property
    def prompts(self) -> list[Prompt]:
        from quantkit.prompts.benchmark import load_benchmark

        categories = list(self.config.categories) if self.config.categories else None
        prompts = load_benchmark(
            self.config.prompts, categories=categories, limit=self.config.prompt_limit, split="evaluation"
        )
        if self.config.shard is not None:
            index, count = self.config.shard
            prompts = prompts[index - 1 :: count]
        if not prompts:
            raise QuantkitError(f"no prompts selected from {self.config.prompts} with {self.config.settings_dict()}")
        self.table.categories.update({p.id: p.category for p in prompts})
        return prompts

    def use_prompts(self, prompts: Sequence[Prompt]) -> None:
        """Run on ``prompts`` from now on (sequential gating takes the set batch by batch): images are looked up
        again for the new set, from the cache where they were generated before."""
        self.__dict__["prompts"] = list(prompts)
        self.table.categories.update({p.id: p.category for p in prompts})
        self._images.clear()

    @functools.cached_property
    def sampler(self) -> SamplerSettings:
        from quantkit.pipelines.ideogram4 import PRESETS

        if self.config.preset not in PRESETS:
            raise QuantkitError(f"unknown sampler preset {self.config.preset!r}; known: {', '.join(PRESETS)}")
        return PRESETS[self.config.preset]

    @functools.cached_property
    def cache(self) -> ImageCache:
        from quantkit.store.cache import ImageCache

        return ImageCache(self.config.cache_dir)

    # -- variants -------------------------------------------------------------------------------------------------
    def variant(self, name: str) -> Variant:
        """The quantized pipeline of ``name``, built on first use (one fresh pipeline per variant)."""
        if name not in self._variants:
            self._variants[name] = self._build(name)
        return self._variants[name]

    def _load_pipeline(self) -> Ideogram4Pipeline:
        from quantkit.pipelines.ideogram4 import load_pipeline

        return load_pipeline(self.config.model, device=self.config.device, offload=self.config.offload)

    def _build(self, name: str) -> Variant:
        recipe = recipe_for(name)
        stats, identity = self.calibration() if self.calibrates(name) else (None, "")
        pipe = self._source_pipeline(take=True)
        return Variant(name, recipe, pipe, apply_recipe(pipe, recipe, stats), calibration=identity)

    def _source_pipeline(self, *, take: bool = False) -> Ideogram4Pipeline:
        """An unquantized pipeline: what image keys are computed on before (or without) building a variant.
        ``take`` hands it over to be quantized (the next caller loads another), so keys cost no extra load."""
        pipe = self.__dict__.pop("_unquantized", None) or self._load_pipeline()
        if not take:
            self.__dict__["_unquantized"] = pipe
        return pipe

    def calibrates(self, name: str) -> bool:
        recipe = recipe_for(name)
        return isinstance(recipe, Recipe) and recipe.needs_calibration

    @functools.cache  # noqa: B019 - one calibration per study object, which lives for the run
    def calibration_key(self) -> str:
        """The identity of this study's INT8 calibration: a hash of what the statistics are computed from (source
        weights, quantizer and generation code, runtime, sampler, resolution, prompts), as an image key is, so it is
        known without calibrating. Not the statistics file's bytes: safetensors writes its metadata in hash-map
        order, so two recordings of the same statistics differ, and every fresh runner would get new INT8 keys."""
        from quantkit.generation import generation_code_version, pipeline_weights_hash, quantizer_version
        from quantkit.pipelines.ideogram4 import runtime_fingerprint

        source = self._source_pipeline()
        inputs = {
            "weights": pipeline_weights_hash(source, self.cache),
            "quantizer": quantizer_version("int8_w8a8"),
            "generation_code": generation_code_version(source),
            "runtime": runtime_fingerprint(source),
            "sampler": self.sampler.to_dict(),
            "resolution": list(self.config.resolution),
            "prompts": [(p.id, p.caption, p.seed) for p in self._calibration_prompts()],
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    def _calibration_prompts(self) -> list[Prompt]:
        from quantkit.prompts.benchmark import load_benchmark

        return load_benchmark(self.config.prompts, split="calibration")[: self.config.calibration_prompts]

    @functools.cache  # noqa: B019 - one calibration per study object, which lives for the run
    def calibration(self) -> tuple[CalibrationStats, str]:
        """(statistics, :meth:`calibration_key`): activation statistics of the FP8 source over the set's calibration
        split, every denoising step, both branches, from the cache when recorded before.

        The calibration split (:func:`quantkit.prompts.benchmark.calibration_split`) is fixed per prompt set and
        never evaluated, so every shard, subset and prompt order builds the same INT8 model.
        """
        from quantkit.calibrate.run import calibrate_pipeline
        from quantkit.calibrate.stats import CalibrationStats

        key = self.calibration_key()
        path = self.cache.root / "calibration" / f"{key}.safetensors"
        if path.is_file():
            try:
                return CalibrationStats.load(path), key
            except CheckpointError as err:  # a damaged cache entry is recomputed, never used
                log.warning("calibration cache: %s; recomputing", err)
        prompts = self._calibration_prompts()
        source = self._source_pipeline()  # calibration only observes it: the same pipeline is quantized next
        with _progress(self.progress, len(prompts), "calibrate int8") as bar:
            stats = calibrate_pipeline(
                source, prompts, self.sampler, resolution=self.config.resolution, progress=lambda: bar.update()
            )
        self.calibration_images += len(prompts)
        stats.save(path)
        return stats, key

    # -- images ---------------------------------------------------------------------------------------------------
    def images(self, name: str) -> dict[str, GeneratedImage]:
        """prompt id -> ``GeneratedImage`` of variant ``name``, from the cache where possible."""
        if name not in self._images:
            from quantkit.generation import generate_cached

            variant = self.variant(name)
            with _progress(self.progress, len(self.prompts), f"generate {name}") as bar:
                generated = generate_cached(
                    variant.pipeline,
                    self.prompts,
                    self.sampler,
                    recipe=variant.recipe,
                    calibration=variant.calibration,
                    resolution=self.config.resolution,
                    cache=self.cache,
                    progress=lambda _: bar.update(),
                )
            self._images[name] = {g.prompt_id: g for g in generated}
        return self._images[name]

    def image_keys(self, name: str) -> dict[str, ImageKey]:
        """prompt id -> the cache key of variant ``name``'s image, without generating (what a rerun would look up),
        calibrating or quantizing: a merge gate asks this of every variant and builds only the changed ones."""
        from quantkit.generation import image_keys

        built = self._variants.get(name)
        keys = image_keys(
            built.pipeline if built else self._source_pipeline(),
            self.prompts,
            self.sampler,
            recipe=built.recipe if built else recipe_for(name),
            calibration=built.calibration if built else self.calibration_key() if self.calibrates(name) else "",
            resolution=self.config.resolution,
            cache=self.cache,
        )
        return {p.id: key for p, key in zip(self.prompts, keys, strict=True)}

    # -- scores ---------------------------------------------------------------------------------------------------
    @functools.cached_property
    def not_measurable(self) -> dict[str, str]:
        """metric -> reason it cannot be measured here (absent weights); metrics missing from the dict can run."""
        from quantkit.metrics import availability

        reasons = {}
        for metric in self.config.metrics:
            ok, reason = availability(metric, device=self.config.device)
            if not ok:
                reasons[metric] = reason
        return reasons

    def scores(self, name: str) -> dict[str, dict[str, float]]:
        """metric -> prompt id -> value for variant ``name``, recorded in :attr:`table` (fidelity metrics compare
        with the reference variant's image of the same prompt and seed; the reference itself has none)."""
        from quantkit.metrics import load

        missing = self.not_measurable
        self.table.not_measured.update(missing)
        images = self.images(name)
        result: dict[str, dict[str, float]] = {}
        for metric_name in self.config.metrics:
            info = catalog.CATALOG[metric_name]
            if metric_name in missing or (info.compares_with_reference and name == self.config.reference):
                continue
            metric = load(metric_name, device=self.config.device)
            prompts = [p for p in self.prompts if "texts" not in info.needs or p.texts]
            if not prompts:
                continue
            references = self.images(self.config.reference) if info.compares_with_reference else None
            values = self._score(metric, images, prompts, references)
            self.table.add(name, metric_name, values, direction=metric.direction)
            result[metric_name] = values
        return result

    def _score(
        self,
        metric: Metric,
        images: Mapping[str, GeneratedImage],
        prompts: Sequence[Prompt],
        references: Mapping[str, GeneratedImage] | None,
    ) -> dict[str, float]:
        """Scores of ``prompts``' images under ``metric``, through the score cache (computed in one batch on a miss)."""
        ids = {}
        for p in prompts:
            ref_key = "" if references is None else references[p.id].key.digest
            ids[p.id] = _score_id(metric, ref_key)
        values = {p.id: self.cache.load_score(images[p.id].key, ids[p.id]) for p in prompts}
        todo = [p for p in prompts if values[p.id] is None]
        step = max(1, getattr(metric, "batch_size", len(todo) or 1))
        with _progress(self.progress and bool(todo), len(todo), f"score {metric.name}") as bar:
            for start in range(0, len(todo), step):  # one metric batch at a time (a score never depends on its batch)
                chunk = todo[start : start + step]
                computed = metric.score(
                    [images[p.id].image for p in chunk],
                    prompts=[p.raw for p in chunk],
                    references=None if references is None else [references[p.id].image for p in chunk],
                    texts=[list(p.texts) for p in chunk],
                )
                for prompt, value in zip(chunk, computed, strict=True):
                    self.cache.store_score(images[prompt.id].key, ids[prompt.id], float(value))
                    values[prompt.id] = float(value)
                bar.update(len(chunk))
        return values

    def facts(self, name: str) -> VariantFacts:
        """Size and latency of variant ``name``: bytes of both transformers' linear layers as the variant ships them
        (packed weights and scales, kept layers in bf16 as the checkpoints store them, whatever dtype this run
        computes in), and mean seconds per generated image."""
        from quantkit.report.summary import VariantFacts

        report = self.variant(name).report
        seconds = [g.seconds for g in self.images(name).values()]
        return VariantFacts(
            disk_bytes=sum(r.bytes if r.action == "quantized" else r.bf16_bytes for r in report.rows),
            seconds_per_image=sum(seconds) / len(seconds) if seconds else None,
        )

    def score_all(self) -> ScoreTable:
        for name in self.config.variants:
            self.scores(name)
        return self.table


def _score_id(metric: Metric, reference_digest: str) -> str:
    """A score's cache id: the metric, its provenance (model, weights file, conventions) and the reference image."""
    provenance = ";".join(f"{k}={v}" for k, v in sorted(metric.info.items()))
    digest = hashlib.sha256(provenance.encode()).hexdigest()[:16]
    return f"{metric.name}@{digest}" + (f"@ref={reference_digest}" if reference_digest else "")


class _progress:
    """A tqdm bar on stderr when progress is on (and stderr is a terminal or CI log), else a silent counter."""

    def __init__(self, enabled: bool, total: int, desc: str, unit: str = "img") -> None:
        from tqdm import tqdm

        disable = not enabled or bool(os.environ.get("QUANTKIT_NO_PROGRESS"))
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, disable=disable)

    def __enter__(self) -> tqdm:
        return self.bar

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
