"""The caption validator accepts exactly Ideogram 4's schema and names the rule and path of every violation."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from quantkit.errors import CaptionError
from quantkit.prompts.caption import RULES, Caption, Element, Finding, Style, canonical_json, parse, validate

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)
COLOR = st.text("0123456789ABCDEF", min_size=6, max_size=6).map(lambda h: "#" + h)
COORD = st.integers(0, 1000)


@st.composite
def bboxes(draw):
    y0, y1 = sorted((draw(COORD), draw(COORD)))
    x0, x1 = sorted((draw(COORD), draw(COORD)))
    return [y0, x0, y1, x1]


@st.composite
def elements(draw):
    kind = draw(st.sampled_from(["obj", "text"]))
    element = {"type": kind}
    if draw(st.booleans()):
        element["bbox"] = draw(bboxes())
    if kind == "text":
        element["text"] = draw(TEXT)
    element["desc"] = draw(TEXT)
    if draw(st.booleans()):
        element["color_palette"] = draw(st.lists(COLOR, min_size=1, max_size=5))
    return element


@st.composite
def styles(draw):
    photo = draw(st.booleans())
    style = {"aesthetics": draw(TEXT), "lighting": draw(TEXT)}
    if photo:
        style["photo"] = draw(TEXT)
        style["medium"] = "photograph"
    else:
        style["medium"] = draw(TEXT)
        style["art_style"] = draw(TEXT)
    if draw(st.booleans()):
        style["color_palette"] = draw(st.lists(COLOR, min_size=1, max_size=16))
    return style


@st.composite
def captions(draw):
    caption = {}
    if draw(st.booleans()):
        caption["high_level_description"] = draw(TEXT)
    if draw(st.booleans()):
        caption["style_description"] = draw(styles())
    caption["compositional_deconstruction"] = {
        "background": draw(TEXT),
        "elements": draw(st.lists(elements(), min_size=1, max_size=4)),
    }
    return caption


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def rules_at(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule, f.path) for f in findings}


@given(captions())
def test_generated_valid_captions_have_no_findings(caption):
    assert validate(caption) == []
    assert validate(json.dumps(caption)) == []


@given(captions(), st.data())
def test_swapping_two_keys_is_a_key_order_finding_at_that_object(caption, data):
    objects = {"$": caption, "$.compositional_deconstruction": caption["compositional_deconstruction"]}
    if "style_description" in caption:
        objects["$.style_description"] = caption["style_description"]
    for index, element in enumerate(caption["compositional_deconstruction"]["elements"]):
        objects[f"$.compositional_deconstruction.elements[{index}]"] = element
    path = data.draw(st.sampled_from(sorted(p for p, o in objects.items() if len(o) >= 2)))
    obj = objects[path]
    keys = list(obj)
    i, j = sorted(data.draw(st.lists(st.integers(0, len(keys) - 1), min_size=2, max_size=2, unique=True)))
    keys[i], keys[j] = keys[j], keys[i]
    reordered = {key: obj[key] for key in keys}
    obj.clear()
    obj.update(reordered)
    rule = "key.top-order" if path == "$" else "key.order"  # the official verifier checks all but the top level
    assert (rule, path) in rules_at(validate(caption))


@given(captions(), st.data())
def test_a_lowercase_colour_is_a_color_format_finding_at_that_colour(caption, data):
    palettes = [
        (f"$.compositional_deconstruction.elements[{i}].color_palette", e["color_palette"])
        for i, e in enumerate(caption["compositional_deconstruction"]["elements"])
        if "color_palette" in e
    ]
    if "color_palette" in caption.get("style_description", {}):
        palettes.append(("$.style_description.color_palette", caption["style_description"]["color_palette"]))
    assume(palettes)
    path, palette = data.draw(st.sampled_from(palettes))
    index = data.draw(st.integers(0, len(palette) - 1))
    assume(palette[index] != palette[index].lower())
    palette[index] = palette[index].lower()
    assert rules_at(validate(caption)) == {("color.format", f"{path}[{index}]")}


def _boxed(caption, data):
    boxed = [i for i, e in enumerate(caption["compositional_deconstruction"]["elements"]) if "bbox" in e]
    assume(boxed)
    index = data.draw(st.sampled_from(boxed))
    return index, caption["compositional_deconstruction"]["elements"][index]["bbox"]


@given(captions(), st.data(), st.integers(1001, 10**6) | st.integers(-(10**6), -1))
def test_a_bbox_value_out_of_range_is_a_bbox_range_finding(caption, data, value):
    index, bbox = _boxed(caption, data)
    slot = data.draw(st.integers(0, 3))
    bbox[slot] = value
    path = f"$.compositional_deconstruction.elements[{index}].bbox"
    assert ("bbox.range", f"{path}[{slot}]") in rules_at(validate(caption))


@given(captions(), st.data())
def test_a_float_bbox_value_is_a_bbox_int_finding(caption, data):
    index, bbox = _boxed(caption, data)
    slot = data.draw(st.integers(0, 3))
    bbox[slot] = float(bbox[slot])
    path = f"$.compositional_deconstruction.elements[{index}].bbox[{slot}]"
    assert rules_at(validate(caption)) == {("bbox.int", path)}
    assert rules_at(validate(json.dumps(caption))) == {("bbox.int", path)}


@given(captions())
def test_a_missing_background_is_a_key_missing_finding(caption):
    del caption["compositional_deconstruction"]["background"]
    assert rules_at(validate(caption)) == {("key.missing", "$.compositional_deconstruction.background")}


@given(captions())
def test_both_photo_and_art_style_is_a_style_one_of_finding(caption):
    assume("style_description" in caption)
    style = caption["style_description"]
    style["photo"] = style["art_style"] = "both at once"
    assert ("style.one-of", "$.style_description") in rules_at(validate(caption))


@given(JSON_VALUES)
def test_arbitrary_json_values_give_findings_never_another_exception(value):
    for candidate in (value, json.dumps(value)):
        findings = validate(candidate)
        assert all(f.rule in RULES for f in findings)
        try:
            parse(candidate)
        except CaptionError:
            assert any(f.is_error for f in findings)
        else:
            assert not any(f.is_error for f in findings)


@given(st.text() | st.binary())
def test_arbitrary_text_gives_findings_never_another_exception(text):
    findings = validate(text)
    assert findings
    assert all(f.rule in RULES for f in findings)
    assume(any(f.is_error for f in findings))  # text that is a caption with warnings only is not an error
    with pytest.raises(CaptionError):
        validate(text, strict=True)


@given(captions())
def test_canonical_json_round_trips(caption):
    text = canonical_json(caption)
    assert json.loads(text) == caption
    assert canonical_json(text) == text
    assert parse(text) == parse(caption)
    assert parse(text).to_json() == text


def test_canonical_json_is_compact_literal_utf8_in_schema_order():
    caption = {
        "high_level_description": "Café sign",
        "compositional_deconstruction": {
            "background": "brick",
            "elements": [{"type": "text", "text": "CAFÉ", "desc": "x"}],
        },
    }
    assert canonical_json(json.dumps(caption, indent=2)) == (
        '{"high_level_description":"Café sign","compositional_deconstruction":{"background":"brick",'
        '"elements":[{"type":"text","text":"CAFÉ","desc":"x"}]}}'
    )


def test_strict_mode_raises_one_error_listing_every_finding():
    bad = {"compositional_deconstruction": {"background": "", "elements": [{"type": "shape", "desc": "x"}]}, "x": 1}
    findings = validate(bad)
    assert {f.rule for f in findings} == {"value.empty", "element.type", "key.unknown"}
    with pytest.raises(CaptionError) as info:
        validate(bad, strict=True)
    for finding in findings:
        assert str(finding) in str(info.value)


ELEMENTS = "$.compositional_deconstruction.elements"
E0 = ELEMENTS + "[0]"
PALETTE = "$.style_description.color_palette"


def ELEMENT(caption):
    return caption["compositional_deconstruction"]["elements"][0]


EXAMPLE = {
    "high_level_description": "A clean, modern business card layout for a tech company.",
    "style_description": {
        "aesthetics": "minimal, professional, geometric",
        "lighting": "even, diffuse studio lighting",
        "medium": "graphic_design",
        "art_style": "flat vector design, generous whitespace, sans-serif typography",
        "color_palette": ["#FFFFFF", "#F0F0F0", "#333333", "#0066FF", "#00CC88"],
    },
    "compositional_deconstruction": {
        "background": "A solid off-white card surface with subtle paper texture.",
        "elements": [
            {
                "type": "obj",
                "bbox": [80, 100, 300, 320],
                "desc": "A small blue hexagon logo.",
                "color_palette": ["#0066FF"],
            },
            {"type": "text", "bbox": [120, 360, 260, 900], "text": "ACME TECH", "desc": "Bold dark grey name."},
        ],
    },
}


@pytest.mark.parametrize(
    ("mutate", "rule", "path"),
    [
        (lambda c: c.pop("compositional_deconstruction"), "key.missing", "$.compositional_deconstruction"),
        (lambda c: c["style_description"].pop("art_style"), "style.one-of", "$.style_description"),
        (lambda c: c["style_description"].update(color_palette=["#000000"] * 17), "color.count", PALETTE),
        (lambda c: c["style_description"].update(color_palette=[]), "value.empty", PALETTE),
        (lambda c: c["style_description"].update(color_palette=["#FFF"]), "color.format", PALETTE + "[0]"),
        (lambda c: ELEMENT(c).update(color_palette=["#000000"] * 6), "color.count", E0 + ".color_palette"),
        (lambda c: ELEMENT(c).update(bbox=[10, 10, 5, 20]), "bbox.order", E0 + ".bbox"),
        (lambda c: ELEMENT(c).update(bbox=[10, 10, 20]), "bbox.shape", E0 + ".bbox"),
        (lambda c: ELEMENT(c).update(bbox=[True, 10, 20, 20]), "bbox.bool", E0 + ".bbox[0]"),
        (lambda c: ELEMENT(c).update(bbox=[10.0, 10, 20, 20]), "bbox.int", E0 + ".bbox[0]"),
        (lambda c: ELEMENT(c).update(text="stray"), "key.unknown", E0 + ".text"),
        (lambda c: ELEMENT(c).pop("desc"), "key.missing", E0 + ".desc"),
        (lambda c: ELEMENT(c).update(type="shape"), "element.type", E0 + ".type"),
        (lambda c: c["compositional_deconstruction"].update(elements=[]), "value.empty", ELEMENTS),
        (lambda c: c["compositional_deconstruction"].update(elements={}), "type.array", ELEMENTS),
        (lambda c: c.update(high_level_description=3), "type.string", "$.high_level_description"),
        (lambda c: c.update(high_level_description="  "), "value.empty", "$.high_level_description"),
        (lambda c: c.update(high_level_description="\ud800"), "value.unicode", "$.high_level_description"),
        (lambda c: c.update(style_description="flat"), "type.object", "$.style_description"),
        (lambda c: c.update(tags=["x"]), "key.unknown", "$.tags"),
    ],
)
def test_each_rule_reports_its_own_path(mutate, rule, path):
    caption = copy.deepcopy(EXAMPLE)
    assert validate(caption) == []
    mutate(caption)
    assert (rule, path) in rules_at(validate(caption))


ISSUE_12_CAPTION = {"compositional_deconstruction": {"background": "A plain grey studio backdrop.", "elements": []}}

# Each accepted by Ideogram's official CaptionVerifier (caption_verifier.py of the ideogram4 package, which checks
# types only of high_level_description and background, never emptiness, top-level order or duplicate keys).
ACCEPTED_BY_THE_OFFICIAL_VERIFIER = {
    "no elements": (lambda c: c["compositional_deconstruction"].update(elements=[]), "value.empty"),
    "empty background": (lambda c: c["compositional_deconstruction"].update(background=""), "value.empty"),
    "blank description": (lambda c: c.update(high_level_description=" "), "value.empty"),
    "empty text": (lambda c: c["compositional_deconstruction"]["elements"][1].update(text=""), "value.empty"),
    "empty palette": (lambda c: c["style_description"].update(color_palette=[]), "value.empty"),
    "numeric desc": (lambda c: ELEMENT(c).update(desc=7), "type.free-text"),
    "list lighting": (lambda c: c["style_description"].update(lighting=["soft"]), "type.free-text"),
    "boolean bbox": (lambda c: ELEMENT(c).update(bbox=[False, 10, True, 20]), "bbox.bool"),
    "composition first": (lambda c: c.update(high_level_description=c.pop("high_level_description")), "key.top-order"),
}


def test_the_issue_12_caption_is_valid_with_a_warning():
    findings = validate(ISSUE_12_CAPTION)
    assert [(f.rule, f.path, f.severity) for f in findings] == [("value.empty", ELEMENTS, "warning")]
    validate(ISSUE_12_CAPTION, strict=True)
    caption = parse(ISSUE_12_CAPTION)
    assert caption.elements == () and caption.texts == ()
    assert json.loads(canonical_json(ISSUE_12_CAPTION)) == ISSUE_12_CAPTION


@pytest.mark.parametrize("case", sorted(ACCEPTED_BY_THE_OFFICIAL_VERIFIER))
def test_what_the_official_verifier_accepts_is_a_warning_never_an_error(case):
    mutate, rule = ACCEPTED_BY_THE_OFFICIAL_VERIFIER[case]
    caption = copy.deepcopy(EXAMPLE)
    mutate(caption)
    findings = validate(caption)
    assert rule in {f.rule for f in findings}
    assert all(f.severity == "warning" for f in findings), [str(f) for f in findings]
    assert json.loads(parse(caption).to_json()) == {k: caption[k] for k in TOP_ORDER if k in caption}


TOP_ORDER = ("high_level_description", "style_description", "compositional_deconstruction")


def test_duplicate_keys_are_a_warning_as_the_official_verifier_keeps_the_last_one():
    text = '{"compositional_deconstruction":{"background":"a","background":"b","elements":[]}}'
    assert parse(text).background == "b"
    assert all(f.severity == "warning" for f in validate(text))


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda c: ELEMENT(c).update(bbox=[10.5, 10, 20, 20]), "bbox.int"),
        (lambda c: c["style_description"].update(color_palette=["#ffffff"]), "color.format"),
        (lambda c: c["compositional_deconstruction"].update(background=3), "type.string"),
        (lambda c: c["style_description"].update(photo="35mm"), "style.one-of"),
        (lambda c: c.update(aspect_ratio="16:9"), "key.unknown"),
    ],
)
def test_what_the_official_verifier_rejects_stays_an_error(mutate, rule):
    caption = copy.deepcopy(EXAMPLE)
    mutate(caption)
    assert any(f.rule == rule and f.is_error for f in validate(caption))
    with pytest.raises(CaptionError, match=rule.replace(".", r"\.")):
        parse(caption)


def test_duplicate_keys_in_json_text_are_reported():
    text = '{"compositional_deconstruction":{"background":"a","background":"b","elements":[{"type":"obj","desc":"d"}]}}'
    assert rules_at(validate(text)) == {("json.duplicate-key", "$.compositional_deconstruction.background")}


def test_a_caption_object_is_valid_by_construction():
    with pytest.raises(CaptionError, match=r"color\.format"):
        Caption(background="wall", elements=(Element("obj", "a cat", color_palette=("#fff000",)),))
    caption = Caption(
        background="wall",
        elements=(Element("text", "painted letters", bbox=(0, 0, 10, 10), text="OPEN"), Element("obj", "a door")),
        style=Style("calm", "overcast", "photograph", photo="35mm, eye level"),
    )
    assert caption.texts == ("OPEN",)
    assert parse(caption.to_json()) == caption
