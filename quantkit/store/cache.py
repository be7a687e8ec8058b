"""Content-addressed cache of generated images and their per-image metric scores.

An entry's address is the sha256 of everything that decides its pixels (:class:`ImageKey`), so a second run with
nothing changed finds every image, and changing one part (a recipe, a seed, a sampler setting) misses exactly the
entries it affects. Each entry is one file written atomically (temp file + ``os.replace``), so pytest-xdist workers
writing the same entry leave one complete version. Every entry carries the sha256 of its content; an entry that does
not decode or does not match its hash is logged, treated as a miss and overwritten by the next store.

Layout under the root (``$QUANTKIT_CACHE`` or ``.quantkit-cache/``)::

    images/<d[:2]>/<d>.png            the image; a PNG text chunk holds the key, pixel sha256, seconds, peak memory
    scores/<d[:2]>/<d>/<m>.json       one metric's score of image d (m = sha256 of the metric id)
    weights/<path sha256>.json        weights hash of a model folder, valid while its files' sizes/mtimes hold
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from quantkit import atomic

CACHE_ENV = "QUANTKIT_CACHE"
DEFAULT_ROOT = ".quantkit-cache"
PNG_META_KEY = "quantkit"
log = logging.getLogger(__name__)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class ImageKey:
    """Everything that decides an image's pixels. ``recipe`` is ``"none"`` or ``"<name>@<recipe hash>"``;
    ``quantizer_version`` (the hash of the quantizer code the recipe's format runs) is empty for unquantized images;
    ``calibration`` identifies the calibration a recipe used (prompts, settings, the statistics' hash; empty if
    none); ``generation_code`` hashes the code path from caption to pixels (the pipeline adapter, the diffusers
    pipeline, its sampler and models); ``sampler`` is the canonical JSON of the sampler settings; ``runtime`` names
    device type, dtype and library versions (CPU and CUDA images differ)."""

    weights_hash: str
    recipe: str
    quantizer_version: str
    calibration: str
    generation_code: str
    caption: str
    seed: int
    sampler: str
    resolution: tuple[int, int]
    runtime: str

    @property
    def digest(self) -> str:
        return sha256_hex(canonical_json(dataclasses.asdict(self)).encode())


@dataclasses.dataclass(frozen=True)
class CachedImage:
    image: Image.Image
    seconds: float
    peak_memory_bytes: int | None


def pixel_sha256(image: Image.Image) -> str:
    """Hash of the decoded pixels (mode, size and bytes), independent of PNG compression."""
    header = f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode()
    return sha256_hex(header + np.asarray(image).tobytes())


class ImageCache:
    """Images and scores keyed by :class:`ImageKey`. Reads never return an entry that fails its hash."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root if root is not None else os.environ.get(CACHE_ENV) or DEFAULT_ROOT)
        self.stored = 0  # images written by this object: what an interrupted run reports as kept

    def image_path(self, key: ImageKey) -> Path:
        digest = key.digest
        return self.root / "images" / digest[:2] / f"{digest}.png"

    def score_path(self, key: ImageKey, metric: str) -> Path:
        digest = key.digest
        return self.root / "scores" / digest[:2] / digest / f"{sha256_hex(metric.encode())[:32]}.json"

    def load(self, key: ImageKey) -> CachedImage | None:
        """The cached image for ``key``, or None on a miss or a corrupted entry (logged)."""
        path = self.image_path(key)
        if not path.is_file():
            return None
        try:
            with Image.open(path) as handle:
                handle.load()
                meta = json.loads(handle.text[PNG_META_KEY])
                image = handle.copy()
            if meta["key"] != key.digest or meta["pixel_sha256"] != pixel_sha256(image):
                raise ValueError("content does not match its recorded sha256")
        except Exception as err:  # any decode or hash failure means the entry cannot be trusted
            log.warning("image cache: corrupted entry %s (%s); regenerating", path, err)
            return None
        return CachedImage(image, float(meta["seconds"]), meta["peak_memory_bytes"])

    def store(self, key: ImageKey, image: Image.Image, *, seconds: float, peak_memory_bytes: int | None) -> Path:
        """Write the image losslessly with its key, pixel hash and cost; atomic, last writer wins."""
        meta = {
            "key": key.digest,
            "key_parts": dataclasses.asdict(key),
            "pixel_sha256": pixel_sha256(image),
            "seconds": seconds,
            "peak_memory_bytes": peak_memory_bytes,
        }
        info = PngImagePlugin.PngInfo()
        info.add_itxt(PNG_META_KEY, canonical_json(meta))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        path = self.image_path(key)
        atomic.write_bytes(path, buffer.getvalue())
        self.stored += 1
        return path

    def load_score(self, key: ImageKey, metric: str) -> float | None:
        """The cached score of the image ``key`` under ``metric`` (an id that names the metric, its version and,
        for fidelity metrics, the reference), or None on a miss or a corrupted entry (logged)."""
        path = self.score_path(key, metric)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            body = {"image": key.digest, "metric": metric, "value": entry["value"]}
            if entry["image"] != key.digest or entry["metric"] != metric or entry["sha256"] != _score_hash(body):
                raise ValueError("content does not match its recorded sha256")
            return float(entry["value"])
        except Exception as err:
            log.warning("score cache: corrupted entry %s (%s); recomputing", path, err)
            return None

    def store_score(self, key: ImageKey, metric: str, value: float) -> Path:
        if not math.isfinite(value):
            raise ValueError(f"score {metric!r} of image {key.digest[:12]} is {value}; only finite scores are cached")
        body = {"image": key.digest, "metric": metric, "value": float(value)}
        path = self.score_path(key, metric)
        atomic.write_json(path, {**body, "sha256": _score_hash(body)})
        return path


def _score_hash(body: dict[str, Any]) -> str:
    return sha256_hex(canonical_json(body).encode())


def weights_hash(folder: str | os.PathLike[str], cache: ImageCache | None = None) -> str:
    """sha256 over a model folder's files (relative path, size and bytes, sorted). Remembered in the cache root per
    folder and re-computed only when a file's size or mtime changes, so real checkpoints are not re-read every run."""
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    signature = [[p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo = (cache or ImageCache()).root / "weights" / f"{sha256_hex(str(folder).encode())}.json"
    try:
        remembered = json.loads(memo.read_text(encoding="utf-8"))
        if remembered["signature"] == signature:
            return remembered["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    result = digest.hexdigest()
    atomic.write_json(memo, {"folder": str(folder), "signature": signature, "sha256": result})
    return result
