"""Judge a change against main: a baseline artifact saved on main, and a study that regenerates only what changed.

``quantkit study --save-baseline DIR`` (on main) writes, per variant, each prompt's image cache key, the sha256 of
its pixels, its per-prompt scores and (optionally, see below) the PNG itself, with the run's settings. A later run
with ``--baseline DIR`` (on a branch):

* a variant whose image keys all equal the baseline's is **unchanged**: nothing is generated or scored, main's
  scores stand in for it;
* any other variant is regenerated; an image byte-identical to main's takes main's scores (they are functions of
  the image, and of the reference image for fidelity metrics), so a variant whose images are all identical is
  **unchanged** without any scoring;
* a **changed** variant is gated against its own main images and scores, paired by prompt and seed: the profile's
  ``[baseline]`` table bounds its fidelity to main's image (``ci_limit`` on PSNR/SSIM/LPIPS against it) and the
  non-inferiority of every quality/text metric against main's per-prompt scores, in addition to the profile's own
  gates.

Main's images are what the fidelity gates compare with, and what spares regenerating an unchanged reference variant.
On the tiny model they are stored (a few kB each); on the real model ``--baseline-images no`` leaves them out (about
1.5 MB per image) and they are then read from the image cache by their key (a CI that keeps its cache has them),
else the fidelity gates are skipped as ``no scores for the variant``.

The folder is written atomically (built beside it, then swapped in) with a manifest of every file's sha256; a
damaged, partial or mismatched baseline is a one-line :class:`~quantkit.errors.StoreError`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from quantkit import atomic
from quantkit.errors import StoreError
from quantkit.profiles import METRIC_NOT_REQUESTED, NO_SCORES, WEIGHTS_ABSENT, GateProfile, GateResults, SkippedGate
from quantkit.scores import ScoreTable
from quantkit.store.cache import ImageCache, pixel_sha256, sha256_hex

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA = "baseline.json"
UNCHANGED, CHANGED, NEW = "unchanged", "changed", "new"
MAIN_SUFFIX = "@main"  # main's scores of a variant, beside its new ones in the baseline gates' table


@dataclasses.dataclass(frozen=True)
class VariantRecord:
    """One variant on main: prompt id -> image key digest, prompt id -> pixel sha256, metric -> prompt -> score."""

    keys: dict[str, str]
    pixels: dict[str, str]
    scores: dict[str, dict[str, float]]


@dataclasses.dataclass(frozen=True)
class Baseline:
    root: Path
    settings: dict[str, Any]
    directions: dict[str, str]
    variants: dict[str, VariantRecord]
    files: dict[str, str]  # manifest: relative path -> sha256

    @property
    def has_images(self) -> bool:
        return any(path.startswith("images/") for path in self.files)

    def image(self, variant: str, prompt_id: str, cache: ImageCache) -> Image.Image | None:
        """Main's image of ``prompt_id``: from the folder when stored, else from ``cache`` by its key, else None."""
        record = self.variants[variant]
        relative = _image_path(variant, prompt_id)
        if relative in self.files:
            data = (self.root / relative).read_bytes()
            if sha256_hex(data) != self.files[relative]:
                raise StoreError(f"baseline {self.root}: {relative} does not match its manifest sha256; save it again")
            with Image.open(io.BytesIO(data)) as handle:
                image = handle.copy()
        else:
            hit = cache.load(_Digest(record.keys[prompt_id]))
            image = None if hit is None else hit.image
        if image is not None and pixel_sha256(image) != record.pixels[prompt_id]:
            raise StoreError(f"baseline {self.root}: main's image {variant}/{prompt_id} does not match its pixel hash")
        return image

    def check_matches(self, study: Any) -> None:
        """Raise when ``study`` does not run what the baseline recorded (settings or prompts differ)."""
        mine = _comparable(study.config.settings_dict())
        theirs = _comparable(self.settings)
        if diff := [f"{k} {theirs.get(k)!r} (baseline) vs {mine.get(k)!r}" for k in mine if mine[k] != theirs.get(k)]:
            raise StoreError(f"baseline {self.root} was saved with other settings: {'; '.join(diff)}")
        prompts = {p.id for p in study.prompts}
        for name, record in self.variants.items():
            if missing := sorted(prompts - set(record.keys)):
                raise StoreError(f"baseline {self.root}: variant {name} lacks prompt(s) {', '.join(missing[:5])}")


@dataclasses.dataclass(frozen=True)
class _Digest:
    """Stands for an :class:`~quantkit.store.cache.ImageKey` known only by its digest (what the cache reads by)."""

    digest: str


def save_baseline(study: Any, directory: str | Path, *, images: bool = True) -> Path:
    """Write the baseline of a scored study (every variant's images generated, :attr:`Study.table` filled)."""
    directory = Path(directory)
    atomic.check_writable_dir(directory.parent, "folder of --save-baseline")
    variants, payload = {}, {}
    for name in study.config.variants:
        generated = study.images(name)
        variants[name] = {
            "keys": {pid: g.key.digest for pid, g in generated.items()},
            "pixels": {pid: pixel_sha256(g.image) for pid, g in generated.items()},
            "scores": study.table.values.get(name, {}),
        }
        if images:
            for pid, g in generated.items():
                buffer = io.BytesIO()
                g.image.save(buffer, format="PNG")
                payload[_image_path(name, pid)] = buffer.getvalue()
    data = {
        "format": FORMAT_VERSION,
        "settings": study.config.settings_dict(),
        "directions": study.table.directions,
        "variants": variants,
    }
    payload[DATA] = json.dumps(data, sort_keys=True, indent=1).encode()
    manifest = {"format": FORMAT_VERSION, "files": {path: sha256_hex(blob) for path, blob in payload.items()}}
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    for path, blob in payload.items():
        atomic.write_bytes(staging / path, blob)
    atomic.write_json(staging / MANIFEST, manifest)  # last: a folder without it is a partial write
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{time.time_ns()}")
        directory.rename(old)
        staging.rename(directory)
        shutil.rmtree(old)
    else:
        staging.rename(directory)
    return directory


def load_baseline(directory: str | Path) -> Baseline:
    """The baseline in ``directory``, its manifest and data checked (images are checked when read)."""
    root = Path(directory)
    again = "save it again with quantkit study --save-baseline"
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise StoreError(f"{root} is not a quantkit baseline (no {MANIFEST}; a partial write?); {again}") from err
    except (OSError, ValueError) as err:
        raise StoreError(f"baseline {root}: unreadable {MANIFEST} ({err}); {again}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise StoreError(f"baseline {root}: format {got!r}, this quantkit reads {FORMAT_VERSION}; {again}")
    files = manifest.get("files", {})
    try:
        blob = (root / DATA).read_bytes()
    except OSError as err:
        raise StoreError(f"baseline {root}: cannot read {DATA} ({err}); {again}") from err
    if sha256_hex(blob) != files.get(DATA):
        raise StoreError(f"baseline {root}: {DATA} does not match its manifest sha256 (damaged); {again}")
    data = json.loads(blob)
    variants = {name: VariantRecord(**record) for name, record in data["variants"].items()}
    return Baseline(root, data["settings"], data["directions"], variants, files)


def _image_path(variant: str, prompt_id: str) -> str:
    return f"images/{variant}/{prompt_id}.png"


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings that must agree with the baseline's (the device may differ: its images then differ by key)."""
    return {k: v for k, v in json.loads(json.dumps(settings)).items() if k != "device"}


# -- a run against the baseline ---------------------------------------------------------------------------------------


class Comparison:
    """A study judged against a baseline: which variants changed, main's scores and images for the rest."""

    def __init__(self, study: Any, baseline: Baseline) -> None:
        baseline.check_matches(study)
        self.study, self.baseline = study, baseline
        self.prompts = {p.id for p in study.prompts}  # the whole run's; sequential gating looks at subsets
        self.status: dict[str, str] = {}
        for name in study.config.variants:
            record = baseline.variants.get(name)
            keys = {pid: key.digest for pid, key in study.image_keys(name).items()}
            same = record is not None and all(record.keys[pid] == d for pid, d in keys.items())
            self.status[name] = NEW if record is None else UNCHANGED if same else CHANGED
        self._seed_unchanged_images()

    @property
    def changed(self) -> list[str]:
        return [name for name, status in self.status.items() if status != UNCHANGED]

    def _seed_unchanged_images(self) -> None:
        """Main's stored images of unchanged variants go into the image cache under their (equal) keys, so a changed
        variant's fidelity against an unchanged reference costs no generation (a second cache object: the study's
        own counter counts generated images only)."""
        study, seeder = self.study, ImageCache(self.study.cache.root)
        for name, status in self.status.items():
            if status != UNCHANGED or not self.baseline.has_images:
                continue
            for pid, key in study.image_keys(name).items():
                if study.cache.load(key) is None and (image := self.baseline.image(name, pid, study.cache)):
                    seeder.store(key, image, seconds=0.0, peak_memory_bytes=None)

    def score(self, name: str) -> None:
        """Fill the study's table for variant ``name`` on the study's current prompts: main's scores when unchanged,
        else generated and scored, an image identical to main's taking main's scores."""
        study = self.study
        record = self.baseline.variants.get(name)
        reference = study.config.reference
        if self.status[name] == UNCHANGED and self.status[reference] == UNCHANGED:
            study.table.not_measured.update(study.not_measurable)
            ids = {p.id for p in study.prompts}
            for metric, values in record.scores.items():
                kept = {p: v for p, v in values.items() if p in ids}
                study.table.add(name, metric, kept, direction=self.baseline.directions[metric])
            return
        if record is not None:
            self._reuse_identical_scores(name, record)
        study.scores(name)
        complete = {p.id for p in study.prompts} == self.prompts
        if self.status[name] == CHANGED and complete and self._identical(name, record):
            self.status[name] = UNCHANGED

    def _identical(self, name: str, record: VariantRecord) -> bool:
        """Whether every image of ``name`` generated for the current prompts is byte-identical to main's."""
        return all(pixel_sha256(g.image) == record.pixels[pid] for pid, g in self.study.images(name).items())

    def _reuse_identical_scores(self, name: str, record: VariantRecord) -> None:
        """Store main's scores under the new keys of images identical to main's (fidelity ones only where the
        reference image is identical too), so :meth:`Study.scores` finds them cached instead of scoring."""
        from quantkit.metrics import load
        from quantkit.study import FIDELITY_METRICS, _score_id

        study = self.study
        images = study.images(name)
        same = {pid for pid, g in images.items() if pixel_sha256(g.image) == record.pixels[pid]}
        if not same:
            return
        reference = study.config.reference
        ref_record = self.baseline.variants.get(reference)
        for metric_name, values in record.scores.items():
            if metric_name in study.not_measurable or metric_name not in study.config.metrics:
                continue
            metric = load(metric_name, device=study.config.device)
            for pid in same & set(values):
                ref_digest = ""
                if metric_name in FIDELITY_METRICS:
                    ref_image = study.images(reference)[pid]
                    if ref_record is None or pixel_sha256(ref_image.image) != ref_record.pixels[pid]:
                        continue
                    ref_digest = ref_image.key.digest
                study.cache.store_score(images[pid].key, _score_id(metric, ref_digest), values[pid])

    # -- baseline gates ---------------------------------------------------------------------------------------------

    def gate_table(
        self, profile: GateProfile, variants: list[str] | None = None, allow_skip: Sequence[str] = ()
    ) -> tuple[ScoreTable, list[dict[str, Any]], list[SkippedGate]]:
        """Scores of ``variants`` (default: the changed ones) against main (fidelity to main's images, new and main's
        quality/text scores side by side), the baseline gates of ``profile`` on them, and those that cannot run."""
        from quantkit.metrics import load

        study, table = self.study, ScoreTable()
        gates: list[dict[str, Any]] = []
        skipped: list[SkippedGate] = []
        allowed = set(profile.allow_skip) | set(allow_skip)
        for name in self.changed if variants is None else variants:
            record = self.baseline.variants.get(name)
            if record is None:
                continue
            ids = {p.id for p in study.prompts}
            for metric, limit in profile.baseline.get("fidelity", {}).items():
                gate = {"metric": metric, "variant": name, "kind": "ci_limit", "limit": limit}
                if why := self._cannot_score(metric):
                    skipped.append(SkippedGate(gate, why[0], why[1], allowed=why[0] in allowed))
                    continue
                images = study.images(name)
                mains = {pid: self.baseline.image(name, pid, study.cache) for pid in sorted(ids)}
                if any(image is None for image in mains.values()):
                    detail = "main's images are neither in the baseline nor in the image cache"
                    skipped.append(SkippedGate(gate, NO_SCORES, detail, allowed=NO_SCORES in allowed))
                    continue
                scorer = load(metric, device=study.config.device)
                pids = sorted(mains)
                values = scorer.score(
                    [images[p].image for p in pids], prompts=None, references=[mains[p] for p in pids], texts=None
                )
                table.add(name, metric, dict(zip(pids, map(float, values), strict=True)), direction=scorer.direction)
                gates.append(gate)
            for metric, margin in profile.baseline.get("non_inferior", {}).items():
                main = f"{name}{MAIN_SUFFIX}"
                gate = {"metric": metric, "variant": name, "reference": main, "kind": "non_inferior", "margin": margin}
                if why := self._cannot_score(metric):
                    skipped.append(SkippedGate(gate, why[0], why[1], allowed=why[0] in allowed))
                    continue
                new = study.table.scores(name, metric)
                old = {p: v for p, v in record.scores.get(metric, {}).items() if p in new}
                direction = study.table.directions[metric]
                table.add(name, metric, new, direction=direction)
                table.add(main, metric, old, direction=direction)
                gates.append(gate)
        table.categories.update(study.table.categories)
        return table, gates, skipped

    def _cannot_score(self, metric: str) -> tuple[str, str] | None:
        if metric in self.study.not_measurable:
            return WEIGHTS_ABSENT, f"see 'not measured: {metric}'"
        if metric not in self.study.config.metrics:
            return METRIC_NOT_REQUESTED, f"{metric} is not among the run's metrics"
        return None

    def evaluate(
        self, profile: GateProfile, *, allow_skip: Sequence[str] = (), n_resamples: int = 10_000
    ) -> GateResults | None:
        """The baseline gates' verdicts (fixed-size: every prompt), or None when no variant changed."""
        from quantkit.stats import evaluate

        table, gates, skipped = self.gate_table(profile, allow_skip=allow_skip)
        if not gates and not skipped:
            return None
        verdicts = evaluate(
            gates,
            table.values,
            categories=table.categories,
            directions=table.directions,
            confidence=profile.confidence,
            adjustment=profile.adjustment,
            n_resamples=n_resamples,
        )
        return GateResults(f"{profile.name} [baseline]", tuple(verdicts), tuple(skipped))
