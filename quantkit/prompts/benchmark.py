"""The frozen benchmark prompt sets under ``golden/prompts/``: loading, verification and writing.

A set is ``<version>.jsonl`` (one prompt per line: id, category, raw prompt, target strings, seed, expander id
and the JSON caption) next to ``<version>.manifest.json`` (its sha256 and counts). Paired statistics compare
variants prompt by prompt, so a set never changes under its version: loading a file that does not match its
manifest is an error, and a change is written as a new version.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from quantkit.atomic import write_bytes, write_json
from quantkit.data import GOLDEN_DIR, require
from quantkit.errors import CaptionError, StoreError, UsageError
from quantkit.prompts.caption import canonical_json, parse
from quantkit.prompts.prompt import Prompt

GOLDEN_PROMPTS = GOLDEN_DIR / "prompts"
DEFAULT_VERSION = "benchmark-v1"
CALIBRATION_SPLIT = 4  # prompts per set reserved for calibration (INT8 SmoothQuant and fragility)
SPLITS = ("all", "evaluation", "calibration")
LINE_KEYS = ("id", "category", "raw", "texts", "seed", "expander", "caption")


@dataclasses.dataclass(frozen=True)
class BenchmarkEntry:
    """A prompt plus the id of the expander that wrote its caption (recorded per line for auditing)."""

    prompt: Prompt
    expander: str

    def to_line(self) -> str:
        p = self.prompt
        fields = [p.id, p.category, p.raw, list(p.texts), p.seed, self.expander, json.loads(p.caption)]
        return json.dumps(dict(zip(LINE_KEYS, fields, strict=True)), ensure_ascii=False, separators=(",", ":"))


def paths_for(path_or_name: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The jsonl file and its manifest for a version name (looked up in ``golden/prompts``) or a path."""
    text = str(path_or_name)
    if not (text.endswith(".jsonl") or os.sep in text):
        require(f"prompt set {text!r}")
        return paths_for(GOLDEN_PROMPTS / f"{text}.jsonl")
    path = Path(text)
    return path, path.with_name(path.name.removesuffix(".jsonl") + ".manifest.json")


def load_benchmark(
    path_or_name: str | os.PathLike[str] = DEFAULT_VERSION,
    *,
    categories: Iterable[str] | None = None,
    limit: int | None = None,
    split: str = "all",
) -> list[Prompt]:
    """The prompts of a verified set, in file order, optionally filtered to ``categories``; ``limit`` takes a
    deterministic subset stratified across categories (round robin, each category in file order).

    ``split``: ``"all"``, ``"evaluation"`` (what studies score: the set without its calibration split) or
    ``"calibration"`` (:func:`calibration_split`, sorted by id).
    """
    prompts = [entry.prompt for entry in read_entries(path_or_name)]
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split != "all":
        reserved = calibration_split(prompts)
        if split == "calibration":
            return reserved
        prompts = [p for p in prompts if p not in reserved]
    if categories is not None:
        wanted = set(categories)
        known = sorted({p.category for p in prompts})
        for category in sorted(wanted - set(known)):
            raise UsageError(f"unknown category {category!r} in {path_or_name}{_closest(category, known)}")
        prompts = [p for p in prompts if p.category in wanted]
    if limit is not None and limit < 1:
        raise UsageError(f"prompt limit must be a positive number of prompts, got {limit}")
    return prompts if limit is None else stratified(prompts, limit)


def calibration_split(prompts: Sequence[Prompt], size: int = CALIBRATION_SPLIT) -> list[Prompt]:
    """The prompts a set reserves for calibration, sorted by id: round robin over the categories in name order, each
    category from its highest id down; at most half the set.

    It depends only on the set's ids and categories, never on the file order, a shard, a category filter or a
    subset, so every run of a set calibrates INT8 on the same prompts and no study ever evaluates them.
    """
    queues = {}
    for prompt in sorted(prompts, key=lambda p: p.id, reverse=True):
        queues.setdefault(prompt.category, []).append(prompt)
    wanted = min(size, len(prompts) // 2)
    chosen: list[Prompt] = []
    while len(chosen) < wanted:
        for category in sorted(queues):
            if queues[category] and len(chosen) < wanted:
                chosen.append(queues[category].pop(0))
    return sorted(chosen, key=lambda p: p.id)


def _closest(name: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f"; known: {', '.join(known)}"


def stratified(prompts: Sequence[Prompt], limit: int) -> list[Prompt]:
    """Up to ``limit`` prompts taken round robin across categories, returned in their original order."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    queues: dict[str, collections.deque[int]] = {}
    for index, prompt in enumerate(prompts):
        queues.setdefault(prompt.category, collections.deque()).append(index)
    chosen: list[int] = []
    while len(chosen) < min(limit, len(prompts)):
        for queue in queues.values():
            if queue and len(chosen) < limit:
                chosen.append(queue.popleft())
    return [prompts[i] for i in sorted(chosen)]


def read_entries(path_or_name: str | os.PathLike[str] = DEFAULT_VERSION) -> list[BenchmarkEntry]:
    """Every line of a set, after checking the file against its manifest and every caption against the schema."""
    path, manifest_path = paths_for(path_or_name)
    manifest = read_manifest(manifest_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"benchmark file {path} is missing ({exc}); restore it from git") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.get("sha256"):
        raise StoreError(
            f"{path} does not match its manifest {manifest_path.name} (sha256 {digest[:12]}..., manifest says "
            f"{str(manifest.get('sha256'))[:12]}...). A benchmark version is frozen so paired scores compare like "
            "with like: restore the file, or bump the version and write the change as a new set "
            "(python -m quantkit.prompts.authoring --version <new-version>)."
        )
    entries = [_entry(path, number, line) for number, line in enumerate(data.decode("utf-8").splitlines(), 1)]
    ids = collections.Counter(e.prompt.id for e in entries)
    if duplicated := sorted(i for i, n in ids.items() if n > 1):
        raise StoreError(f"{path}: duplicate prompt ids {duplicated}; ids pair scores and must be unique")
    if summarize(entries) != {k: manifest.get(k) for k in ("count", "categories", "text_prompts", "expanders")}:
        raise StoreError(f"{path}: counts disagree with {manifest_path.name}; rewrite the set with the authoring tool")
    return entries


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        prompts = path.with_name(path.name.removesuffix(".manifest.json") + ".jsonl")
        fix = (
            "restore it from git"
            if path.parent == GOLDEN_PROMPTS
            else f"for your own prompt file, write it with `quantkit prompts manifest {prompts}`"
        )
        reason = "missing" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        raise StoreError(f"prompt set manifest {path} is {reason}; {fix}") from exc
    if not isinstance(manifest, dict) or manifest.get("version") != path.name.removesuffix(".manifest.json"):
        raise StoreError(f"benchmark manifest {path} does not name its own version; restore it from git")
    return manifest


def _entry(path: Path, number: int, line: str) -> BenchmarkEntry:
    where = f"{path.name}:{number}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise StoreError(f"{where}: not a JSON line ({exc})") from exc
    if not isinstance(record, dict) or list(record) != list(LINE_KEYS):
        raise StoreError(f"{where}: expected the keys {list(LINE_KEYS)} in that order")
    texts = record["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise StoreError(f"{where}: 'texts' must be a list of strings")
    if not all(isinstance(record[k], str) and record[k] for k in ("id", "category", "raw", "expander")):
        raise StoreError(f"{where}: id, category, raw and expander must be non-empty strings")
    if not isinstance(record["seed"], int) or record["seed"] < 0:
        raise StoreError(f"{where}: 'seed' must be a non-negative integer")
    try:
        caption = parse(record["caption"])
    except CaptionError as exc:
        raise CaptionError(f"{where} ({record['id']}): {exc}") from exc
    if collections.Counter(caption.texts) != collections.Counter(texts):
        raise StoreError(f"{where}: caption renders {list(caption.texts)} but the targets are {texts}")
    prompt = Prompt(record["id"], record["category"], record["raw"], caption.to_json(), tuple(texts), record["seed"])
    return BenchmarkEntry(prompt, record["expander"])


def summarize(entries: Sequence[BenchmarkEntry]) -> dict[str, Any]:
    """The counts a manifest records (and a closing note reports)."""
    return {
        "count": len(entries),
        "categories": dict(collections.Counter(e.prompt.category for e in entries)),
        "text_prompts": sum(1 for e in entries if e.prompt.texts),
        "expanders": dict(collections.Counter(e.expander for e in entries)),
    }


def write_manifest(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Validate a prompt file line by line and write its manifest beside it (what :func:`read_entries` checks)."""
    path, manifest_path = paths_for(Path(path))
    if path.suffix != ".jsonl":
        raise UsageError(f"{path}: a prompt file is JSON lines named <version>.jsonl")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read prompt file {path}: {exc.strerror or exc}") from exc
    entries = [_entry(path, number, line) for number, line in enumerate(data.decode("utf-8").splitlines(), 1)]
    if not entries:
        raise UsageError(f"{path} holds no prompts")
    ids = collections.Counter(e.prompt.id for e in entries)
    if duplicated := sorted(i for i, n in ids.items() if n > 1):
        raise StoreError(f"{path}: duplicate prompt ids {duplicated}; ids pair scores and must be unique")
    digest = hashlib.sha256(data).hexdigest()
    version = path.name.removesuffix(".jsonl")
    if manifest_path.exists() and not force:
        with contextlib.suppress(StoreError):
            if read_manifest(manifest_path).get("sha256") != digest:
                raise UsageError(
                    f"{manifest_path} records other content; a prompt set is frozen under its name: save the change "
                    "under a new file name, or pass --force if no scores of the old content matter"
                )
    write_json(manifest_path, {"version": version, "file": path.name, "sha256": digest, **summarize(entries)})
    read_entries(path)  # what was written must load
    return manifest_path


def write_benchmark(
    entries: Sequence[BenchmarkEntry], version: str, *, directory: str | os.PathLike[str] = GOLDEN_PROMPTS
) -> Path:
    """Write a set and its manifest (atomically). An existing version is only rewritten with identical bytes."""
    for entry in entries:
        if canonical_json(entry.prompt.caption) != entry.prompt.caption:
            raise CaptionError(f"{entry.prompt.id}: caption is not in canonical form")
    path, manifest_path = paths_for(Path(directory) / f"{version}.jsonl")
    data = "".join(entry.to_line() + "\n" for entry in entries).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if manifest_path.exists() and read_manifest(manifest_path).get("sha256") != digest:
        raise StoreError(
            f"{version} already exists with different content; a benchmark version is frozen, so write the change "
            "under a new version name"
        )
    write_bytes(path, data)
    write_json(manifest_path, {"version": version, "file": path.name, "sha256": digest, **summarize(entries)})
    read_entries(path)  # what was written must load
    return path


def read_prompts(source: str | os.PathLike[str], limit: int | None = None) -> list[Prompt]:
    """A benchmark by name (its evaluation split, with its stratified ``limit`` subset), or a prompt set file as
    JSON lines: ``id`` and ``caption`` (the canonical JSON caption string) are required; ``category``, ``raw``,
    ``texts``, ``seed`` are optional."""
    path = Path(source)
    if not path.suffix:
        return load_benchmark(str(source), limit=limit, split="evaluation")  # the prompts a study evaluates
    prompts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CaptionError(f"cannot read prompt set {path}: {err}") from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            caption = row["caption"]
            if not isinstance(caption, str):
                raise TypeError("caption must be the canonical JSON caption as a string")
            prompts.append(
                Prompt(
                    id=str(row["id"]),
                    category=row.get("category", ""),
                    raw=row.get("raw", ""),
                    caption=caption,
                    texts=tuple(row.get("texts", ())),
                    seed=int(row.get("seed", -1)),
                )
            )
        except (ValueError, KeyError, TypeError) as err:
            raise CaptionError(f"{path}:{number}: bad prompt line ({err!r})") from err
    if not prompts:
        raise CaptionError(f"{path}: no prompts")
    return prompts
