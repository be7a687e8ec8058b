"""Ideogram 4's structured JSON caption: the schema, its validator, and the one canonical serialisation.

The model was trained on these captions, so anything off-schema (a key out of order, a lowercase colour, a float
bbox) is off-distribution input. The rules follow Ideogram's official ``CaptionVerifier`` (``caption_verifier.py``,
vendored in the ideogram4 package; see ``/work/shared/reference/paper-and-model.md`` section 4): whatever it
reports is an error here. Where it is silent, a finding is a warning (:data:`WARNING_RULES`): top-level key order,
empty strings, lists and palettes, no element at all, duplicate JSON keys, a boolean in a bbox, a non-string
style field or ``desc``. Two checks it lacks stay errors because quantkit cannot use such a caption: a lone
surrogate (the caption cannot be written as UTF-8 for the text encoder) and a non-string ``text`` (the string
OCR must read).

``validate`` reports every finding (JSON path, rule id, message; a caption is valid when none is an error) and
never raises on any input except, in strict mode, one :class:`CaptionError` listing them when one is an error.
``parse`` turns a dict or JSON string into a :class:`Caption`, which is valid by construction; ``canonical_json``
is the exact string fed to the model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from quantkit.errors import CaptionError

TOP_LEVEL_ORDER = ("high_level_description", "style_description", "compositional_deconstruction")
TOP_LEVEL_REQUIRED = ("compositional_deconstruction",)
STYLE_ORDER_PHOTO = ("aesthetics", "lighting", "photo", "medium", "color_palette")
STYLE_ORDER_ART = ("aesthetics", "lighting", "medium", "art_style", "color_palette")
STYLE_REQUIRED = ("aesthetics", "lighting", "medium")
COMPOSITION_ORDER = ("background", "elements")
ELEMENT_ORDER = {
    "obj": ("type", "bbox", "desc", "color_palette"),
    "text": ("type", "bbox", "text", "desc", "color_palette"),
}
ELEMENT_REQUIRED = {"obj": ("type", "desc"), "text": ("type", "text", "desc")}
STYLE_PALETTE_MAX = 16
ELEMENT_PALETTE_MAX = 5
BBOX_MIN, BBOX_MAX = 0, 1000
COLOR_RE = re.compile(r"#[0-9A-F]{6}")

RULES: dict[str, str] = {
    "json.syntax": "the input is not a JSON document (or not text)",
    "json.duplicate-key": "an object repeats a key (JSON parsers, the official verifier's too, keep the last one)",
    "type.object": "expected a JSON object",
    "type.array": "expected a JSON array",
    "type.string": "expected a string (high_level_description, background, the text of a text element)",
    "type.free-text": "a style field or an element's desc is not a string (the official verifier does not check)",
    "value.empty": "a string is empty or blank, or a list is empty (elements, a palette)",
    "value.unicode": "a string holds a lone surrogate and cannot be written as UTF-8",
    "key.unknown": "a key the schema does not know, or one not allowed in this kind of object",
    "key.missing": "a required key is absent",
    "key.order": "keys are present but not in the schema's order",
    "key.top-order": "top-level keys are not in the order the model saw (the official verifier does not check)",
    "style.one-of": "style_description needs exactly one of 'photo' and 'art_style'",
    "element.type": "an element's 'type' is not 'obj' or 'text'",
    "bbox.shape": "bbox is not a list of four values [y_min, x_min, y_max, x_max]",
    "bbox.int": "a bbox value is not an integer",
    "bbox.bool": "a bbox value is a JSON boolean, which Python (and the official verifier) counts as 0 or 1",
    "bbox.range": "a bbox value is outside 0..1000",
    "bbox.order": "bbox has y_min > y_max or x_min > x_max",
    "color.format": "a colour is not an uppercase #RRGGBB string",
    "color.count": "a palette holds more colours than allowed (16 for the style, 5 per element)",
    "expansion.texts": "(expanders only) the text elements do not render exactly the requested strings",
}
# Findings the official CaptionVerifier accepts: off-distribution or suspicious, never an error.
WARNING_RULES = frozenset({"json.duplicate-key", "type.free-text", "value.empty", "key.top-order", "bbox.bool"})


@dataclasses.dataclass(frozen=True)
class Finding:
    """One schema violation: where (a JSON path such as ``$.style_description.color_palette[2]``), which rule
    (a key of :data:`RULES`), and a sentence saying what is wrong."""

    path: str
    rule: str
    message: str

    @property
    def severity(self) -> str:
        """``"warning"`` for what the official verifier accepts (:data:`WARNING_RULES`), else ``"error"``."""
        return "warning" if self.rule in WARNING_RULES else "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.rule}]" + ("" if self.is_error else " (warning)")


class _DuplicateKeys(dict):
    """A dict parsed from JSON text that remembers which keys appeared more than once."""

    duplicates: tuple[str, ...] = ()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
    obj = _DuplicateKeys(pairs)
    if len(obj) != len(pairs):
        keys = [key for key, _ in pairs]
        obj.duplicates = tuple(sorted({key for key in keys if keys.count(key) > 1}))
    return obj


def _load_json(text: str | bytes | bytearray) -> tuple[Any, list[Finding]]:
    """Decode JSON text; every failure (bad bytes, syntax, absurd nesting) becomes a finding, not an exception."""
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook), []
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, [Finding("$", "json.syntax", f"not valid JSON: {exc}")]


def validate(caption: Any, *, strict: bool = False) -> list[Finding]:
    """Every finding in ``caption`` (a dict, a JSON string or bytes, a :class:`Caption`, or anything).

    Returns ``[]`` for a clean caption; a caption is valid when no finding is an error (``Finding.is_error``).
    With ``strict=True`` raises one :class:`CaptionError` listing all findings when one is an error. Never raises
    anything else, whatever the input.
    """
    return _finish(_findings(_load(caption)), strict)


def _load(caption: Any) -> tuple[Any, list[Finding]]:
    if isinstance(caption, Caption):
        return caption.to_dict(), []
    if isinstance(caption, str | bytes | bytearray):
        return _load_json(caption)
    return caption, []


def _findings(loaded: tuple[Any, list[Finding]]) -> list[Finding]:
    data, findings = loaded
    if findings:
        return findings
    try:
        _check_caption(data, findings)
    except RecursionError:  # repr() of a pathologically nested value handed in as a dict
        findings.append(Finding("$", "json.syntax", "a value nests too deeply to inspect"))
    return findings


def _finish(findings: list[Finding], strict: bool) -> list[Finding]:
    if strict and any(f.is_error for f in findings):
        listing = "\n  ".join(str(f) for f in findings)
        raise CaptionError(
            f"caption is not valid under Ideogram 4's caption schema ({len(findings)} finding(s)):\n  {listing}\n"
            "Fix the listed fields (rule ids are documented in quantkit.prompts.caption.RULES)."
        )
    return findings


def _check_caption(caption: Any, out: list[Finding]) -> None:
    if not _is_object("$", caption, out):
        return
    _check_keys("$", caption, TOP_LEVEL_ORDER, TOP_LEVEL_REQUIRED, out, order_rule="key.top-order")
    if "high_level_description" in caption:
        _check_string("$.high_level_description", caption["high_level_description"], out)
    if "style_description" in caption:
        _check_style("$.style_description", caption["style_description"], out)
    if "compositional_deconstruction" in caption:
        _check_composition("$.compositional_deconstruction", caption["compositional_deconstruction"], out)


def _check_style(path: str, style: Any, out: list[Finding]) -> None:
    if not _is_object(path, style, out):
        return
    has_photo, has_art = "photo" in style, "art_style" in style
    if has_photo == has_art:
        which = "both 'photo' and" if has_photo else "neither 'photo' nor"
        out.append(Finding(path, "style.one-of", f"has {which} 'art_style'; expected exactly one of them"))
        known = set(STYLE_ORDER_PHOTO) | set(STYLE_ORDER_ART)
        for key in style:
            if key not in known:
                out.append(Finding(_child(path, key), "key.unknown", f"unknown key {key!r} in style_description"))
        _check_missing(path, style, STYLE_REQUIRED, out)
    else:
        order = STYLE_ORDER_PHOTO if has_photo else STYLE_ORDER_ART
        _check_keys(path, style, order, (*STYLE_REQUIRED, "photo" if has_photo else "art_style"), out)
    for key in ("aesthetics", "lighting", "photo", "medium", "art_style"):
        if key in style:
            _check_string(_child(path, key), style[key], out, type_rule="type.free-text")
    if "color_palette" in style:
        _check_palette(_child(path, "color_palette"), style["color_palette"], STYLE_PALETTE_MAX, out)


def _check_composition(path: str, composition: Any, out: list[Finding]) -> None:
    if not _is_object(path, composition, out):
        return
    _check_keys(path, composition, COMPOSITION_ORDER, COMPOSITION_ORDER, out)
    if "background" in composition:
        _check_string(_child(path, "background"), composition["background"], out)
    if "elements" not in composition:
        return
    elements_path = _child(path, "elements")
    elements = composition["elements"]
    if not isinstance(elements, list):
        out.append(Finding(elements_path, "type.array", f"expected a list of elements, got {_kind(elements)}"))
        return
    if not elements:
        out.append(Finding(elements_path, "value.empty", "no elements: the image is the background alone"))
    for index, element in enumerate(elements):
        _check_element(f"{elements_path}[{index}]", element, out)


def _check_element(path: str, element: Any, out: list[Finding]) -> None:
    if not _is_object(path, element, out):
        return
    kind = element.get("type")
    if "type" not in element:
        out.append(Finding(_child(path, "type"), "key.missing", "missing required key 'type' ('obj' or 'text')"))
    elif kind not in ELEMENT_ORDER:
        out.append(Finding(_child(path, "type"), "element.type", f"type must be 'obj' or 'text', got {kind!r}"))
    if kind in ELEMENT_ORDER:
        where = f"an element of type {kind!r}"
        _check_keys(path, element, ELEMENT_ORDER[kind], ELEMENT_REQUIRED[kind], out, context=where)
    else:
        for key in element:
            if key not in ELEMENT_ORDER["text"]:
                out.append(Finding(_child(path, key), "key.unknown", f"unknown key {key!r} in an element"))
    if "text" in element:
        _check_string(_child(path, "text"), element["text"], out)
    if "desc" in element:
        _check_string(_child(path, "desc"), element["desc"], out, type_rule="type.free-text")
    if "bbox" in element:
        _check_bbox(_child(path, "bbox"), element["bbox"], out)
    if "color_palette" in element:
        _check_palette(_child(path, "color_palette"), element["color_palette"], ELEMENT_PALETTE_MAX, out)


def _check_bbox(path: str, bbox: Any, out: list[Finding]) -> None:
    if not isinstance(bbox, list) or len(bbox) != 4:
        out.append(Finding(path, "bbox.shape", f"expected [y_min, x_min, y_max, x_max], got {_short(bbox)}"))
        return
    numbers_ok = True
    for index, value in enumerate(bbox):
        if isinstance(value, bool):
            out.append(Finding(f"{path}[{index}]", "bbox.bool", f"{_short(value)} counts as {int(value)}"))
        if not isinstance(value, int):
            out.append(Finding(f"{path}[{index}]", "bbox.int", f"expected an integer, got {_short(value)}"))
            numbers_ok = False
        elif not BBOX_MIN <= value <= BBOX_MAX:
            out.append(Finding(f"{path}[{index}]", "bbox.range", f"{value} is outside {BBOX_MIN}..{BBOX_MAX}"))
    if numbers_ok:
        y_min, x_min, y_max, x_max = bbox
        if y_min > y_max or x_min > x_max:
            out.append(Finding(path, "bbox.order", f"{bbox} needs y_min <= y_max and x_min <= x_max"))


def _check_palette(path: str, palette: Any, limit: int, out: list[Finding]) -> None:
    if not isinstance(palette, list):
        out.append(Finding(path, "type.array", f"expected a list of colours, got {_kind(palette)}"))
        return
    if not palette:
        out.append(Finding(path, "value.empty", "an empty palette; omit the key instead"))
    if len(palette) > limit:
        out.append(Finding(path, "color.count", f"{len(palette)} colours, at most {limit} allowed here"))
    for index, color in enumerate(palette):
        if not isinstance(color, str) or not COLOR_RE.fullmatch(color):
            out.append(Finding(f"{path}[{index}]", "color.format", f"{_short(color)} is not uppercase #RRGGBB"))


def _check_keys(
    path: str,
    obj: Mapping[Any, Any],
    order: Sequence[str],
    required: Sequence[str],
    out: list[Finding],
    *,
    context: str = "",
    order_rule: str = "key.order",
) -> None:
    """Unknown keys, duplicates, missing required keys, and the order of the known keys that are present."""
    where = context or ("the caption" if path == "$" else path.rsplit(".", 1)[-1])
    for key in getattr(obj, "duplicates", ()):
        out.append(Finding(_child(path, key), "json.duplicate-key", f"key {key!r} appears more than once"))
    for key in obj:
        if key not in order:
            out.append(Finding(_child(path, key), "key.unknown", f"key {_short(key)} is not allowed in {where}"))
    _check_missing(path, obj, required, out)
    present = [key for key in obj if key in order]
    expected = [key for key in order if key in obj]
    if present != expected:
        out.append(Finding(path, order_rule, f"keys are in order {present}, expected {expected}"))


def _check_missing(path: str, obj: Mapping[Any, Any], required: Sequence[str], out: list[Finding]) -> None:
    for key in required:
        if key not in obj:
            out.append(Finding(_child(path, key), "key.missing", f"missing required key {key!r}"))


def _check_string(path: str, value: Any, out: list[Finding], *, type_rule: str = "type.string") -> None:
    if not isinstance(value, str):
        out.append(Finding(path, type_rule, f"expected a string, got {_kind(value)}"))
    elif not value.strip():
        out.append(Finding(path, "value.empty", "must not be empty or blank"))
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            out.append(Finding(path, "value.unicode", "holds a lone surrogate; not encodable as UTF-8"))


def _is_object(path: str, value: Any, out: list[Finding]) -> bool:
    if isinstance(value, Mapping):
        return True
    out.append(Finding(path, "type.object", f"expected a JSON object, got {_kind(value)}"))
    return False


def _child(path: str, key: Any) -> str:
    return f"{path}.{key}" if isinstance(key, str) and key.isidentifier() else f"{path}[{_short(key)}]"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass(frozen=True)
class Style:
    """``style_description``: photo captions set ``photo``, all others ``art_style`` (exactly one)."""

    aesthetics: str
    lighting: str
    medium: str
    photo: str | None = None
    art_style: str | None = None
    color_palette: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        order = STYLE_ORDER_PHOTO if self.photo is not None else STYLE_ORDER_ART
        return _ordered(self, order)


@dataclasses.dataclass(frozen=True)
class Element:
    """One entry of ``compositional_deconstruction.elements``; ``text`` is set exactly for ``type == "text"``."""

    type: str
    desc: str
    bbox: tuple[int, int, int, int] | None = None
    text: str | None = None
    color_palette: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _ordered(self, ELEMENT_ORDER.get(self.type, ELEMENT_ORDER["text"]))


@dataclasses.dataclass(frozen=True)
class Caption:
    """A caption that is valid by construction (the constructor validates strictly)."""

    background: str
    elements: tuple[Element, ...]
    high_level_description: str | None = None
    style: Style | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(self.elements))
        validate(self.to_dict(), strict=True)

    @property
    def texts(self) -> tuple[str, ...]:
        """The literal strings the text elements ask to render, in element order: the OCR targets."""
        return tuple(e.text for e in self.elements if e.type == "text" and e.text is not None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.high_level_description is not None:
            out["high_level_description"] = self.high_level_description
        if self.style is not None:
            out["style_description"] = self.style.to_dict()
        out["compositional_deconstruction"] = {
            "background": self.background,
            "elements": [e.to_dict() for e in self.elements],
        }
        return out

    def to_json(self) -> str:
        """The canonical string: compact separators, literal UTF-8, schema key order."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def _ordered(obj: Any, order: Sequence[str]) -> dict[str, Any]:
    out = {}
    for key in order:
        value = getattr(obj, key)
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def parse(caption: Caption | Mapping[str, Any] | str | bytes) -> Caption:
    """A :class:`Caption` from a dict or JSON text; raises :class:`CaptionError` (listing every finding) and
    nothing else when the input is not a valid caption."""
    if isinstance(caption, Caption):
        return caption
    loaded = _load(caption)
    _finish(_findings(loaded), strict=True)
    data = loaded[0]
    style = data.get("style_description")
    composition = data["compositional_deconstruction"]
    return Caption(
        background=composition["background"],
        elements=tuple(
            Element(
                type=e["type"],
                desc=e["desc"],
                bbox=tuple(e["bbox"]) if "bbox" in e else None,
                text=e.get("text"),
                color_palette=tuple(e["color_palette"]) if "color_palette" in e else None,
            )
            for e in composition["elements"]
        ),
        high_level_description=data.get("high_level_description"),
        style=None
        if style is None
        else Style(
            aesthetics=style["aesthetics"],
            lighting=style["lighting"],
            medium=style["medium"],
            photo=style.get("photo"),
            art_style=style.get("art_style"),
            color_palette=tuple(style["color_palette"]) if "color_palette" in style else None,
        ),
    )


def canonical_json(caption: Caption | Mapping[str, Any] | str | bytes) -> str:
    """The exact caption string the model sees; raises :class:`CaptionError` if the caption is not valid."""
    return parse(caption).to_json()
