"""The golden store: frozen reference images and scores for one model profile and prompt set.

A golden set lives in ``golden/references/<profile>/<prompt-set>/``: one lossless PNG per prompt (``<id>.png``),
``scores.json`` (prompt id -> metric -> value, computed by whoever records), and ``manifest.json`` with the sha256 of
every file, the settings that made the images, the model weights hash, the code version and the environment (library
versions, CPU, lock; :mod:`quantkit.environment`). ``record`` refuses to overwrite, ``verify`` checks the files
against the manifest (every missing, extra or changed file is one line of the error), ``update`` rewrites the set on
purpose and reports what changed, ``compare`` checks regenerated images (exact in the recording environment, within
the profile's :class:`GoldenTolerance` elsewhere).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from quantkit import atomic, environment
from quantkit.data import GOLDEN_DIR
from quantkit.errors import StoreError
from quantkit.store.cache import sha256_hex

GOLDEN_ROOT = GOLDEN_DIR / "references"
MANIFEST = "manifest.json"
SCORES = "scores.json"
MANIFEST_FORMAT = 1
PROMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class GoldenSet:
    profile: str
    prompt_set: str
    root: Path = GOLDEN_ROOT

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.profile / self.prompt_set

    def __str__(self) -> str:
        return f"golden set {self.profile}/{self.prompt_set} ({self.dir})"


@dataclasses.dataclass(frozen=True)
class GoldenDiff:
    """What an update changes: prompt ids whose image appeared, disappeared or changed pixels, and score changes
    as (prompt id, metric, old, new) with None for an absent value."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    scores: tuple[tuple[str, str, float | None, float | None], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.scores)

    def summary(self) -> str:
        if self.empty:
            return "no changes"
        lines = [
            f"images: {len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed; "
            f"{len(self.scores)} score changes"
        ]
        lines += [f"  + {pid}.png" for pid in self.added]
        lines += [f"  - {pid}.png" for pid in self.removed]
        lines += [f"  ~ {pid}.png" for pid in self.changed]
        lines += [f"  score {pid} {metric}: {old} -> {new}" for pid, metric, old, new in self.scores]
        return "\n".join(lines)


def record(
    golden: GoldenSet,
    images: Mapping[str, Image.Image],
    scores: Mapping[str, Mapping[str, float]],
    *,
    settings: Mapping[str, Any],
    weights_hash: str,
    code_version: Mapping[str, str],
) -> dict[str, Any]:
    """Write a new golden set; refuses if one is already there (changing references is ``update``'s job)."""
    if (golden.dir / MANIFEST).exists():
        raise StoreError(f"{golden} already exists; run `quantkit golden update` to replace it deliberately")
    return _write(golden, images, scores, settings=settings, weights_hash=weights_hash, code_version=code_version)


def update(
    golden: GoldenSet,
    images: Mapping[str, Image.Image],
    scores: Mapping[str, Mapping[str, float]],
    *,
    settings: Mapping[str, Any],
    weights_hash: str,
    code_version: Mapping[str, str],
) -> GoldenDiff:
    """Replace the set with ``images`` and ``scores`` and return what changed (a new set counts as all added)."""
    old_images = load_images(golden) if (golden.dir / MANIFEST).exists() else {}
    old_scores = load_scores(golden) if (golden.dir / MANIFEST).exists() else {}
    change = diff(old_images, old_scores, images, scores)
    _write(golden, images, scores, settings=settings, weights_hash=weights_hash, code_version=code_version)
    for pid in change.removed:
        (golden.dir / f"{pid}.png").unlink(missing_ok=True)
    return change


def verify(golden: GoldenSet) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest, or raise one error listing every problem."""
    manifest = load_manifest(golden)
    recorded: dict[str, str] = manifest["files"]
    on_disk = {p.name for p in golden.dir.iterdir() if p.is_file() and p.name != MANIFEST and p.name[0] != "."}
    missing = sorted(recorded.keys() - on_disk)
    problems = [f"missing: {name} (recorded sha256 {recorded[name][:12]})" for name in missing]
    problems += [f"extra: {name} (not in the manifest)" for name in sorted(on_disk - recorded.keys())]
    for name in sorted(recorded.keys() & on_disk):
        actual = sha256_hex((golden.dir / name).read_bytes())
        if actual != recorded[name]:
            problems.append(f"changed: {name} (sha256 recorded {recorded[name][:12]}, on disk {actual[:12]})")
    if problems:
        raise StoreError(
            f"{golden} does not match its manifest:\n  "
            + "\n  ".join(problems)
            + "\nrestore the files (git checkout) or, if the change is intended, run `quantkit golden update`"
        )
    return manifest


@dataclasses.dataclass(frozen=True)
class GoldenTolerance:
    """How far a reference image may move when it is regenerated in another environment (other library releases,
    another CPU): float kernels legitimately change the last bit there. In the recording environment the check is
    exact. Declared per gate profile (``[golden]`` in ``golden/gates/<name>.toml``)."""

    max_pixel_difference: int = 2
    min_psnr: float = 50.0

    def __post_init__(self) -> None:
        difference = self.max_pixel_difference
        if isinstance(difference, bool) or not isinstance(difference, int) or not 0 <= difference <= 255:
            raise StoreError(f"golden tolerance max_pixel_difference must be an integer 0-255, got {difference!r}")
        if isinstance(self.min_psnr, bool) or not isinstance(self.min_psnr, int | float) or self.min_psnr < 0:
            raise StoreError(f"golden tolerance min_psnr must be a non-negative number of dB, got {self.min_psnr!r}")


@dataclasses.dataclass(frozen=True)
class GoldenCheck:
    """The outcome of comparing regenerated images with a golden set."""

    problems: tuple[str, ...]
    changes: tuple[str, ...]  # what differs from the recording environment; empty means an exact comparison
    max_difference: int
    min_psnr: float

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: what changed, and how far the images moved (``torch 2.14.1 → 2.15.0; golden images within
        tolerance: max diff 1, PSNR 58.1 dB``)."""
        moved = f"max diff {self.max_difference}, PSNR {self.min_psnr:.1f} dB"
        if not self.changes:
            return f"same environment as the recording; golden images {'identical' if self.passed else 'differ'}"
        verdict = "within tolerance" if self.passed else "beyond tolerance"
        return f"{'; '.join(self.changes)}; golden images {verdict}: {moved}"


def compare(
    golden: GoldenSet,
    images: Mapping[str, Image.Image],
    *,
    tolerance: GoldenTolerance = GoldenTolerance(),
    current: Mapping[str, Any] | None = None,
) -> GoldenCheck:
    """Compare freshly generated ``images`` with the references: pixel-exact when ``current`` (this process's
    :func:`quantkit.environment.fingerprint` by default) equals the recorded environment, within ``tolerance``
    otherwise. Prompts missing on either side and different sizes are always problems."""
    manifest = load_manifest(golden)
    changes = tuple(environment.differences(manifest.get("environment"), current or environment.fingerprint()))
    allowed, floor = (tolerance.max_pixel_difference, tolerance.min_psnr) if changes else (0, math.inf)
    references = load_images(golden)
    problems = [f"not generated: {pid}" for pid in sorted(references.keys() - images.keys())]
    problems += [f"no reference for: {pid}" for pid in sorted(images.keys() - references.keys())]
    worst_difference, worst_psnr = 0, math.inf
    for pid in sorted(references.keys() & images.keys()):
        ref, new = np.asarray(references[pid].convert("RGB")), np.asarray(images[pid].convert("RGB"))
        if ref.shape != new.shape:
            problems.append(f"{pid}: size {new.shape[1]}x{new.shape[0]}, reference {ref.shape[1]}x{ref.shape[0]}")
            continue
        delta = np.abs(ref.astype(np.int16) - new.astype(np.int16))
        difference, psnr = int(delta.max()), _psnr(delta)
        worst_difference, worst_psnr = max(worst_difference, difference), min(worst_psnr, psnr)
        if difference > allowed or psnr < floor:
            mismatched = float((delta > 0).any(axis=-1).mean())
            problems.append(
                f"{pid}: max pixel difference {difference} (allowed {allowed}), PSNR {psnr:.1f} dB "
                f"(floor {floor:.1f}); {mismatched:.1%} of pixels differ"
            )
    return GoldenCheck(tuple(problems), changes, worst_difference, worst_psnr)


def _psnr(delta: np.ndarray) -> float:
    mse = float(np.mean(delta.astype(np.float64) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def load_manifest(golden: GoldenSet) -> dict[str, Any]:
    path = golden.dir / MANIFEST
    if not path.is_file():
        raise StoreError(f"{golden}: no {MANIFEST}; record it with `quantkit golden record`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest["format"] != MANIFEST_FORMAT or not isinstance(manifest["files"], dict):
            raise ValueError(f"unsupported manifest format {manifest.get('format')!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise StoreError(f"{golden}: {MANIFEST} is unreadable ({err}); restore it from git") from err
    return manifest


def load_images(golden: GoldenSet) -> dict[str, Image.Image]:
    """The reference images by prompt id (verified against the manifest first)."""
    manifest = verify(golden)
    images = {}
    for pid in manifest["prompt_ids"]:
        with Image.open(golden.dir / f"{pid}.png") as handle:
            images[pid] = handle.convert("RGB")
    return images


def load_scores(golden: GoldenSet) -> dict[str, dict[str, float]]:
    verify(golden)
    return json.loads((golden.dir / SCORES).read_text(encoding="utf-8"))


def diff(
    old_images: Mapping[str, Image.Image],
    old_scores: Mapping[str, Mapping[str, float]],
    new_images: Mapping[str, Image.Image],
    new_scores: Mapping[str, Mapping[str, float]],
) -> GoldenDiff:
    """Image changes compare decoded pixels, so a different PNG encoder never shows up as a change."""
    changed = tuple(
        pid
        for pid in sorted(old_images.keys() & new_images.keys())
        if not np.array_equal(np.asarray(old_images[pid].convert("RGB")), np.asarray(new_images[pid].convert("RGB")))
    )
    score_changes = []
    for pid in sorted(old_scores.keys() | new_scores.keys()):
        old, new = old_scores.get(pid, {}), new_scores.get(pid, {})
        for metric in sorted(old.keys() | new.keys()):
            if old.get(metric) != new.get(metric):
                score_changes.append((pid, metric, old.get(metric), new.get(metric)))
    return GoldenDiff(
        added=tuple(sorted(new_images.keys() - old_images.keys())),
        removed=tuple(sorted(old_images.keys() - new_images.keys())),
        changed=changed,
        scores=tuple(score_changes),
    )


def _write(
    golden: GoldenSet,
    images: Mapping[str, Image.Image],
    scores: Mapping[str, Mapping[str, float]],
    *,
    settings: Mapping[str, Any],
    weights_hash: str,
    code_version: Mapping[str, str],
) -> dict[str, Any]:
    _check(golden, images, scores)
    files = {}
    for pid in sorted(images):
        buffer = io.BytesIO()
        images[pid].convert("RGB").save(buffer, format="PNG")
        atomic.write_bytes(golden.dir / f"{pid}.png", buffer.getvalue())
        files[f"{pid}.png"] = sha256_hex(buffer.getvalue())
    score_table = {pid: {m: float(v) for m, v in sorted(scores.get(pid, {}).items())} for pid in sorted(images)}
    score_bytes = (json.dumps(score_table, indent=2, sort_keys=True) + "\n").encode()
    atomic.write_bytes(golden.dir / SCORES, score_bytes)
    files[SCORES] = sha256_hex(score_bytes)
    manifest = {
        "format": MANIFEST_FORMAT,
        "profile": golden.profile,
        "prompt_set": golden.prompt_set,
        "prompt_ids": sorted(images),
        "settings": dict(settings),
        "weights_hash": weights_hash,
        "code_version": dict(code_version),
        "environment": environment.fingerprint(),
        "files": files,
    }
    atomic.write_json(golden.dir / MANIFEST, manifest)
    return manifest


def _check(golden: GoldenSet, images: Mapping[str, Image.Image], scores: Mapping[str, Mapping[str, float]]) -> None:
    if not images:
        raise StoreError(f"{golden}: no images to record")
    for name in (golden.profile, golden.prompt_set, *images):
        if not PROMPT_ID.match(name):
            raise StoreError(f"{golden}: {name!r} cannot be a file name; use letters, digits, '.', '_' and '-'")
    if unknown := sorted(scores.keys() - images.keys()):
        raise StoreError(f"{golden}: scores for prompts without an image: {', '.join(unknown)}")
    for pid, row in scores.items():
        for metric, value in row.items():
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise StoreError(f"{golden}: score {metric!r} of prompt {pid!r} is {value!r}; scores must be finite")
