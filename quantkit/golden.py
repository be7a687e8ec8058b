"""The golden workflow: record, update and regenerate the reference variant's images of a prompt set.

Golden images are the FP8 reference's (what every fidelity metric compares against), built through a
:class:`~quantkit.study.Study` of the same configuration a study uses, and stored by :mod:`quantkit.store.golden`
under ``<root>/<model profile>/<prompt set>/``. ``quantkit golden``, the pytest plugin's ``quantkit_golden`` fixture
and the reference test all call these functions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantkit import __version__
from quantkit.errors import StoreError
from quantkit.prompts.benchmark import read_prompts
from quantkit.store import golden as store

if TYPE_CHECKING:
    from PIL import Image

    from quantkit.pipelines.ideogram4 import SamplerSettings
    from quantkit.prompts.prompt import Prompt
    from quantkit.study import StudyConfig

REFERENCE = "fp8"


def golden_set_name(prompts: str, limit: int | None) -> str:
    """The golden set of a prompt selection: the benchmark or file name, and the subset size if any."""
    return Path(prompts).stem + (f"-limit{limit}" if limit else "")


def profile_name(model: str) -> str:
    """The model profile golden sets are filed under: ``tiny`` for the embedded default, else the folder's name."""
    from quantkit.pipelines.ideogram4 import EMBEDDED_MODELS, TINY

    folder = Path(EMBEDDED_MODELS.get(model, model)).resolve()
    return TINY if folder == EMBEDDED_MODELS[TINY].resolve() else folder.name


def golden_set(config: StudyConfig, root: str | Path | None = None) -> store.GoldenSet:
    """The golden set a study of ``config`` is compared with (under ``root``, default the golden references)."""
    return store.GoldenSet(
        profile_name(config.model),
        golden_set_name(config.prompts, config.prompt_limit),
        Path(root) if root is not None else store.GOLDEN_ROOT,
    )


def recorded_sets(root: str | Path, profile: str | None = None) -> list[store.GoldenSet]:
    """Every golden set under ``root`` (of one model profile if given): folders holding a manifest."""
    manifests = sorted(Path(root).glob(f"{profile or '*'}/*/{store.MANIFEST}"))
    return [store.GoldenSet(m.parent.parent.name, m.parent.name, Path(root)) for m in manifests]


def reference_images(
    config: StudyConfig,
    prompts: Sequence[Prompt] | None = None,
    *,
    settings: SamplerSettings | None = None,
    resolution: tuple[int, int] | None = None,
) -> tuple[dict[str, Image.Image], dict[str, Any]]:
    """The reference variant's images of ``prompts`` (default: the study's selection) through the image cache, with
    the sampler and resolution of ``config`` unless given, and what a manifest records about them."""
    from quantkit.generation import generate_cached, pipeline_weights_hash, quantizer_version, recipe_id
    from quantkit.pipelines.ideogram4 import PRESETS, runtime_fingerprint
    from quantkit.study import Study

    study = Study(dataclasses.replace(config, variants=(REFERENCE,), reference=REFERENCE), progress=False)
    variant = study.variant(REFERENCE)
    settings = settings or PRESETS[config.preset]
    resolution = resolution or config.resolution
    prompts = list(prompts) if prompts is not None else read_prompts(config.prompts, config.prompt_limit)
    generated = generate_cached(
        variant.pipeline,
        prompts,
        settings,
        recipe=variant.recipe,
        calibration=variant.calibration,
        resolution=resolution,
        cache=study.cache,
    )
    record = {
        "settings": {
            "sampler": settings.to_dict(),
            "resolution": list(resolution),
            "recipe": recipe_id(variant.recipe),
            "runtime": json.loads(runtime_fingerprint(variant.pipeline)),
        },
        "weights_hash": pipeline_weights_hash(variant.pipeline, study.cache),
        "code_version": {"quantkit": __version__, "quantizer": quantizer_version()},
    }
    return {g.prompt_id: g.image for g in generated}, record


def record(
    target: store.GoldenSet,
    config: StudyConfig,
    prompts: Sequence[Prompt] | None = None,
    *,
    settings: SamplerSettings | None = None,
    scores: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Generate and write a new golden set (refuses to overwrite one); returns its manifest."""
    images, made = reference_images(config, prompts, settings=settings)
    return store.record(target, images, scores or {}, **made)


def update(
    target: store.GoldenSet,
    config: StudyConfig,
    prompts: Sequence[Prompt] | None = None,
    *,
    settings: SamplerSettings | None = None,
    scores: Mapping[str, Mapping[str, float]] | None = None,
) -> store.GoldenDiff:
    """Regenerate and replace a golden set on purpose; returns what changed."""
    images, made = reference_images(config, prompts, settings=settings)
    return store.update(target, images, scores or {}, **made)


def regenerate(
    target: store.GoldenSet,
    config: StudyConfig,
    prompts: Sequence[Prompt] | None = None,
    *,
    tolerance: store.GoldenTolerance | None = None,
) -> store.GoldenCheck:
    """Verify the set's files, regenerate its images with the recorded sampler and resolution, and compare them:
    exact in the recording environment, within ``tolerance`` (default :class:`GoldenTolerance`) elsewhere. Other
    weights than the recorded ones are an error, not a comparison."""
    from quantkit.pipelines.ideogram4 import SamplerSettings

    manifest = store.verify(target)
    recorded = manifest["settings"]
    settings = SamplerSettings.from_dict(recorded["sampler"])
    images, made = reference_images(config, prompts, settings=settings, resolution=tuple(recorded["resolution"]))
    if made["weights_hash"] != manifest["weights_hash"]:
        raise StoreError(
            f"{target} was recorded from weights {manifest['weights_hash'][:12]}, the model has "
            f"{made['weights_hash'][:12]}; regenerate with the recorded model"
        )
    return store.compare(target, images, tolerance=tolerance or store.GoldenTolerance())
