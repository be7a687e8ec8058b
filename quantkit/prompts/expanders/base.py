"""What every expander shares: the request, the bounded repair/retry loop, and the frozen expansion cache.

An expander turns a raw prompt (plus the strings to render and a seed) into a caption. Models emit near-misses
(a markdown fence, keys out of order, a lowercase colour), so each candidate is first repaired mechanically,
then validated; a candidate that is still invalid is retried with a fresh seed and, for chat models, the
findings fed back. After ``max_attempts`` the loop stops with one error naming the last findings.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quantkit.atomic import write_text
from quantkit.errors import CaptionError, StoreError
from quantkit.prompts.caption import (
    COMPOSITION_ORDER,
    ELEMENT_ORDER,
    STYLE_ORDER_ART,
    STYLE_ORDER_PHOTO,
    TOP_LEVEL_ORDER,
    Caption,
    Finding,
    parse,
    validate,
)

DEFAULT_MAX_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class ExpansionRequest:
    """The inputs of one expansion. ``texts`` are the exact strings the caption must render (its OCR targets)."""

    raw: str
    texts: tuple[str, ...] = ()
    seed: int = 0
    category: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", tuple(self.texts))


@dataclasses.dataclass(frozen=True)
class Attempt:
    """A rejected candidate: what the expander returned and why it failed (fed back to the next attempt)."""

    output: Any
    findings: tuple[Finding, ...]


class Expander(abc.ABC):
    """One way of writing captions. ``id`` names the expander and everything that changes its output (model,
    system-prompt version), since it keys the cache."""

    id: str

    @abc.abstractmethod
    def propose(self, request: ExpansionRequest, attempt: int, previous: Attempt | None) -> str | Mapping:
        """One candidate caption (JSON text or a dict) for attempt ``attempt`` (0-based); ``previous`` is the
        rejected candidate before it (None on the first attempt)."""


def expand(
    expander: Expander,
    request: ExpansionRequest,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    cache: ExpansionCache | None = None,
) -> Caption:
    """A valid caption for ``request``: from ``cache`` if it holds one, else from the repair/retry loop (and then
    stored). Raises :class:`CaptionError` when no attempt yields a valid caption."""
    if cache is not None and (cached := cache.get(expander.id, request)) is not None:
        return cached
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    previous: Attempt | None = None
    for attempt in range(max_attempts):
        output = expander.propose(request, attempt, previous)
        candidate = repair(output)
        findings = validate(candidate) or text_findings(candidate, request.texts)
        if not findings:
            caption = parse(candidate)
            if cache is not None:
                cache.put(expander.id, request, caption, attempts=attempt + 1)
            return caption
        previous = Attempt(output, tuple(findings))
    assert previous is not None
    listing = "\n  ".join(str(f) for f in previous.findings[:12])
    raise CaptionError(
        f"expander {expander.id!r} produced no valid caption for raw prompt {request.raw!r} (seed {request.seed}) "
        f"in {max_attempts} attempt(s). Last output (first 300 chars): {str(previous.output)[:300]!r}\n"
        f"Last findings:\n  {listing}\n"
        "Fix: raise max_attempts, install `outlines` for schema-constrained decoding, or use a stronger model."
    )


def text_findings(caption: Any, texts: Sequence[str]) -> list[Finding]:
    """When texts are requested, the caption's text elements must render exactly those strings (as a multiset):
    a missing string has no OCR target, an extra one makes exact match impossible."""
    if not texts:
        return []
    rendered = parse(caption).texts
    if collections.Counter(rendered) == collections.Counter(texts):
        return []
    return [
        Finding(
            "$.compositional_deconstruction.elements",
            "expansion.texts",
            f"text elements render {list(rendered)}, expected exactly {list(texts)}",
        )
    ]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_LOWER_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def repair(output: str | Mapping | Any) -> Any:
    """Mechanical fixes for near-miss model output; anything that is not a near miss is returned unchanged so
    the validator reports it. Fixes: a markdown fence or chatter around the JSON object, keys out of schema
    order, lowercase hex colours."""
    data = output
    if isinstance(output, str):
        text = output.strip()
        if fenced := _FENCE.search(text):
            text = fenced.group(1).strip()
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end < start:
            return output
        try:
            data = json.loads(text[start : end + 1])
        except (ValueError, RecursionError):
            return output
    if not isinstance(data, Mapping):
        return data
    return _reorder(data)


def _reorder(caption: Mapping) -> dict:
    out = _ordered(caption, TOP_LEVEL_ORDER)
    style = out.get("style_description")
    if isinstance(style, Mapping):
        order = STYLE_ORDER_PHOTO if "photo" in style else STYLE_ORDER_ART
        out["style_description"] = _ordered(style, order)
        _upper_palette(out["style_description"])
    composition = out.get("compositional_deconstruction")
    if isinstance(composition, Mapping):
        composition = out["compositional_deconstruction"] = _ordered(composition, COMPOSITION_ORDER)
        if isinstance(composition.get("elements"), list):
            composition["elements"] = [_element(e) for e in composition["elements"]]
    return out


def _element(element: Any) -> Any:
    if not isinstance(element, Mapping) or element.get("type") not in ELEMENT_ORDER:
        return element
    fixed = _ordered(element, ELEMENT_ORDER[element["type"]])
    _upper_palette(fixed)
    return fixed


def _ordered(obj: Mapping, order: Sequence[str]) -> dict:
    """Known keys in schema order, then unknown keys as they came (the validator still reports those)."""
    return {**{k: obj[k] for k in order if k in obj}, **{k: v for k, v in obj.items() if k not in order}}


def _upper_palette(obj: dict) -> None:
    palette = obj.get("color_palette")
    if isinstance(palette, list):
        obj["color_palette"] = [c.upper() if isinstance(c, str) and _LOWER_HEX.fullmatch(c) else c for c in palette]


class ExpansionCache:
    """Expansions frozen on disk, one JSON file, keyed by (expander id, raw prompt, texts, category, seed).

    A benchmark is expanded once (possibly on a GPU) and later runs read the same captions. Entries are
    re-validated on read, so a schema change surfaces as an error rather than stale input. Writes are atomic;
    concurrent writers may drop each other's new entries but never corrupt the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @staticmethod
    def key(expander_id: str, request: ExpansionRequest) -> str:
        fields = [expander_id, request.raw, list(request.texts), request.category, request.seed]
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()

    def _entries(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise StoreError(f"expansion cache {self.path} is unreadable ({exc}); restore it from git") from exc
        if not isinstance(entries, dict):
            raise StoreError(f"expansion cache {self.path} must hold a JSON object; restore it from git")
        return entries

    def get(self, expander_id: str, request: ExpansionRequest) -> Caption | None:
        entry = self._entries().get(self.key(expander_id, request))
        if entry is None:
            return None
        try:
            return parse(entry["caption"])
        except (CaptionError, KeyError, TypeError) as exc:
            raise StoreError(
                f"expansion cache {self.path}: the entry for {request.raw!r} ({expander_id}, seed {request.seed}) "
                f"is no longer a valid caption ({exc}); delete the entry and expand again"
            ) from exc

    def put(self, expander_id: str, request: ExpansionRequest, caption: Caption, *, attempts: int) -> None:
        entries = self._entries()
        entries[self.key(expander_id, request)] = {
            "expander": expander_id,
            "raw": request.raw,
            "texts": list(request.texts),
            "category": request.category,
            "seed": request.seed,
            "attempts": attempts,
            "caption": caption.to_json(),
        }
        write_text(self.path, json.dumps(entries, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
