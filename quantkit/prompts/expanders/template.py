"""The offline expander: a deterministic caption from the raw prompt, its category, the strings to render, a seed.

It stands in for an LLM where none can run (the tiny pipeline, CPU tests, the first benchmark version). The
captions vary the way real ones do: per category a choice of looks (photo or art style, medium, lighting),
palettes, layouts with bboxes or without, typography and supporting props, all picked by hashing
(raw, category, texts, seed, slot) so the output never depends on Python's ``random`` implementation.
Text elements render exactly the requested strings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from quantkit.prompts.expanders.base import Attempt, Expander, ExpansionRequest


@dataclasses.dataclass(frozen=True)
class Look:
    """A rendering family: photographs carry ``photo`` notes, everything else an ``art_style``."""

    medium: str
    aesthetics: tuple[str, ...]
    lighting: tuple[str, ...]
    style: tuple[str, ...]
    backgrounds: tuple[str, ...]

    @property
    def is_photo(self) -> bool:
        return self.medium == "photograph"


def _options(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split("|"))


def _look(medium: str, aesthetics: str, lighting: str, style: str, backgrounds: str) -> Look:
    """A look from ``|``-separated option lists (keeps the vocabulary tables readable)."""
    return Look(medium, _options(aesthetics), _options(lighting), _options(style), _options(backgrounds))


PHOTO_STREET = _look(
    "photograph",
    "candid, documentary, unposed | crisp, editorial, balanced composition | quiet, observational, natural colour",
    "overcast daylight with soft shadows | low evening sun from the left | mixed street lamps and shop light",
    "35mm lens at eye level, deep focus | 50mm lens, slight low angle | 28mm wide shot from across the street",
    "a city sidewalk of grey paving stones with a brick facade behind | a narrow market street with shuttered "
    "stalls | a quiet suburban road edge with a low hedge and a lamp post",
)
PHOTO_STUDIO = _look(
    "photograph",
    "clean, commercial, precise | minimal, product-focused, uncluttered | tactile, close, material-rich",
    "large softbox from the upper left with a white bounce card | even, diffuse studio lighting | a single "
    "hard key light with a dark fill side",
    "100mm macro lens, straight-on | 85mm lens, three-quarter view from slightly above | top-down flat lay, "
    "90 degree overhead",
    "a seamless pale grey paper sweep | a matte sand-coloured tabletop against a plaster wall | a dark slate "
    "surface with a charcoal backdrop",
)
PHOTO_NATURE = _look(
    "photograph",
    "calm, natural, spacious | detailed, textured, grounded | bright, fresh, outdoor",
    "high overcast light with no hard shadows | early morning side light through thin mist | clear midday sun "
    "from above",
    "24mm wide lens at ground level | 70mm lens from a standing viewpoint | 135mm lens compressing the distance",
    "a meadow of short green grass under a pale sky | a rocky shoreline with grey pebbles and a calm sea | a "
    "wooden market table under a striped awning",
)
GRAPHIC = _look(
    "graphic_design",
    "bold, flat, high-contrast | minimal, geometric, generous whitespace | playful, rounded, friendly",
    "even, flat lighting with no shadows | flat colour fields, no light direction | even light, print-like",
    "flat vector shapes with crisp edges | Swiss grid layout, strict alignment | screen-print look with two "
    "overlapping ink layers",
    "a solid flat colour field filling the frame | a subtle vertical two-colour gradient | an uncoated paper "
    "texture in a single tint",
)
ILLUSTRATION = _look(
    "illustration",
    "whimsical, storybook, gentle | clean line, modern editorial | detailed, ink-heavy, vintage",
    "soft ambient light with no strong shadows | light from a window on the right | a low sun casting long shapes",
    "gouache with visible brush texture | thin ink outlines with flat digital colour | coloured pencil on "
    "textured paper",
    "a softly painted landscape with rolling hills | a simple interior with a plank floor and a plain wall | a "
    "textured paper ground with faint pencil guidelines",
)
PAINTING = _look(
    "painting",
    "expressive, textural, painterly | classical, balanced, restrained | bold, modernist, simplified forms",
    "north window light from the left | candlelight from a single source on the table | diffuse open-air daylight",
    "oil on canvas with thick impasto | watercolour with soft wet edges | flat acrylic blocks in the manner of "
    "mid-century modernism",
    "a dark umber studio wall | a hazy river valley at dusk | a plain ochre ground with visible canvas weave",
)
RENDER = _look(
    "3d_render",
    "clean, precise, product visualisation | soft, toy-like, rounded | realistic, material study",
    "three-point studio lighting | soft global illumination from a white dome | a single area light from above",
    "physically based materials, subtle ambient occlusion | clay render with pastel materials | glossy "
    "materials with sharp reflections",
    "an infinite white cyclorama | a pale blue gradient floor-to-wall sweep | a dark grey studio with a soft "
    "floor reflection",
)

LOOKS: dict[str, tuple[Look, ...]] = {
    "typography": (PHOTO_STREET, GRAPHIC, ILLUSTRATION),
    "posters": (GRAPHIC, ILLUSTRATION, PAINTING),
    "packaging": (PHOTO_STUDIO, RENDER, GRAPHIC),
    "apparel": (PHOTO_STUDIO, PHOTO_STREET, RENDER),
    "photo-scenes": (PHOTO_STREET, PHOTO_NATURE),
    "illustration": (ILLUSTRATION, GRAPHIC),
    "art": (PAINTING, ILLUSTRATION, RENDER),
    "artifacts": (PHOTO_STUDIO, RENDER, PAINTING),
    "produce": (PHOTO_STUDIO, PHOTO_NATURE, PAINTING),
    "world-knowledge": (PHOTO_NATURE, PHOTO_STREET, ILLUSTRATION),
}
DEFAULT_LOOKS = (PHOTO_STREET, GRAPHIC, ILLUSTRATION, PAINTING, RENDER)

# (colour name, hex) palettes; a caption uses one palette and names its colours in element descriptions.
PALETTES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("deep teal", "#0B4F5C"), ("mustard yellow", "#E3A72F"), ("cream", "#F4EBD9"), ("charcoal", "#2B2B2B")),
    (("brick red", "#B23A2E"), ("off-white", "#F2EEE6"), ("navy", "#1D2B53"), ("sky blue", "#8FB8DE")),
    (("forest green", "#24543A"), ("sage", "#A9BFA0"), ("ivory", "#FAF6EC"), ("rust", "#B5562C"), ("ink", "#1A1A1A")),
    (("black", "#111111"), ("white", "#FFFFFF"), ("signal red", "#E10600")),
    (("plum", "#5B2A56"), ("coral", "#F2766B"), ("peach", "#F9C9A8"), ("midnight blue", "#1B1F3B")),
    (("sand", "#D8C3A5"), ("terracotta", "#C2673F"), ("olive", "#6B6B3A"), ("bone", "#EFE8DA"), ("umber", "#4A3426")),
    (("cobalt", "#1F4FBF"), ("lemon", "#F5E050"), ("white", "#FFFFFF"), ("slate", "#4A5561")),
    (("pine", "#1E3D2F"), ("gold", "#C9A227"), ("parchment", "#EDE0C4"), ("oxblood", "#5E1914")),
    (("pale grey", "#D9D9D6"), ("graphite", "#3C3F42"), ("electric blue", "#0066FF"), ("mint", "#00CC88")),
    (("tomato red", "#D8342A"), ("leaf green", "#4C9A2A"), ("butter yellow", "#F6D55C"), ("linen", "#F3EFE6")),
)

LETTERING = (
    "bold condensed sans-serif capitals",
    "a heavy slab-serif face",
    "hand-painted brush lettering",
    "a clean geometric sans-serif",
    "an elegant high-contrast serif",
    "rounded friendly display letters",
    "stencilled block capitals",
    "a tall art-deco display face",
)

PROPS: dict[str, tuple[str, ...]] = {
    "typography": ("a pair of small brass mounting brackets", "a thin painted border line", "a small arrow motif"),
    "posters": ("a thin keyline border inside the edges", "a row of small dots along the bottom", "a sunburst motif"),
    "packaging": ("a small paper price sticker", "a folded cloth napkin beside it", "a sprig of fresh herbs"),
    "apparel": ("a wooden hanger with a brass hook", "a folded pair of jeans beside it", "a canvas tote bag"),
    "photo-scenes": ("a parked bicycle leaning on a post", "a pigeon on the curb", "a potted olive tree"),
    "illustration": ("a small bird in flight", "a trail of fallen leaves", "a paper kite on a string"),
    "art": ("a ceramic jug on a ledge", "a folded cloth draped over a stool", "a single lemon"),
    "artifacts": ("a small museum label card", "a felt display stand", "a magnifying glass"),
    "produce": ("a woven basket", "a cutting board of pale oak", "a small paring knife"),
    "world-knowledge": ("a flock of distant birds", "a wooden signpost", "a low stone wall"),
}
DEFAULT_PROPS = ("a small potted plant", "a folded paper note", "a round ceramic bowl")

# Layouts: (subject box, text boxes in order). Boxes are [y_min, x_min, y_max, x_max] on 0..1000.
LAYOUTS: tuple[tuple[tuple[int, int, int, int], tuple[tuple[int, int, int, int], ...]], ...] = (
    ((300, 200, 780, 800), ((70, 100, 240, 900), (810, 160, 890, 840), (900, 280, 960, 720))),
    ((80, 120, 560, 880), ((610, 80, 770, 920), (790, 200, 860, 800), (880, 300, 940, 700))),
    ((150, 520, 850, 960), ((180, 50, 380, 480), (420, 50, 540, 480), (580, 50, 660, 480))),
    ((200, 100, 900, 900), ((380, 150, 620, 850), (660, 250, 740, 750), (60, 300, 140, 700))),
    ((420, 250, 940, 750), ((60, 60, 200, 600), (220, 60, 300, 600), (60, 650, 160, 940))),
)
JITTER = 25
# A raw prompt that names a colour keeps it: the subject then gets no competing palette colour.
COLOUR_WORDS = frozenset(
    [
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "white",
        "grey",
        "gray",
        "gold",
        "golden",
        "silver",
        "brass",
        "copper",
        "bronze",
        "navy",
        "teal",
        "turquoise",
        "cream",
        "ivory",
    ]
)


class _Picker:
    """Stable choices: each named slot hashes (inputs, slot) so adding a slot never shifts the others."""

    def __init__(self, request: ExpansionRequest) -> None:
        self.base = json.dumps([request.raw, request.category, list(request.texts), request.seed], ensure_ascii=False)

    def integer(self, slot: str, low: int, high: int) -> int:
        digest = hashlib.sha256(f"{self.base}|{slot}".encode()).digest()
        return low + int.from_bytes(digest[:8], "little") % (high - low + 1)

    def choice(self, slot: str, options: Sequence[Any]) -> Any:
        return options[self.integer(slot, 0, len(options) - 1)]

    def chance(self, slot: str, percent: int) -> bool:
        return self.integer(slot, 0, 99) < percent


MEDIUM_PHRASES = {
    "photograph": "a photograph",
    "graphic_design": "a piece of flat graphic design",
    "illustration": "an illustration",
    "painting": "a painting",
    "3d_render": "a 3D render",
}
# The rendered strings live in text elements; the subject description names the thing, not its words.
_SAYING = re.compile(
    r"\s*(?:\b(?:reading|saying|that says|which says|with the words?|with the text|printed with|lettered with|"
    r"spelling out|spelling|titled|labelled|labeled|marked)\s+)?"
    r"\"[^\"]+\"(?:(?:,|,? and| above| over| below)\s+\"[^\"]+\")*"
)


def _sentence(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text[:1].upper() + text[1:]


class TemplateExpander(Expander):
    """Deterministic, offline captions; ``id`` carries a version bumped whenever the output would change."""

    id = "template-v1"

    def propose(self, request: ExpansionRequest, attempt: int, previous: Attempt | None) -> Mapping:
        return build_caption(request)


def build_caption(request: ExpansionRequest) -> dict[str, Any]:
    pick = _Picker(request)
    look: Look = pick.choice("look", LOOKS.get(request.category or "", DEFAULT_LOOKS))
    palette = pick.choice("palette", PALETTES)
    with_bboxes = pick.chance("bboxes", 70)
    subject_box, text_boxes = pick.choice("layout", LAYOUTS)
    if len(request.texts) > len(text_boxes):
        with_bboxes = False

    style: dict[str, Any] = {
        "aesthetics": pick.choice("aesthetics", look.aesthetics),
        "lighting": pick.choice("lighting", look.lighting),
    }
    if look.is_photo:
        style["photo"] = pick.choice("photo", look.style)
        style["medium"] = look.medium
    else:
        style["medium"] = look.medium
        style["art_style"] = pick.choice("art_style", look.style)
    if pick.chance("style-palette", 75):
        style["color_palette"] = [hex_ for _, hex_ in palette]

    subject = _SAYING.sub("", request.raw).strip().rstrip(".,;: ") or "the scene"
    if COLOUR_WORDS.isdisjoint(re.findall(r"[a-z]+", request.raw.lower())):
        colour_name, colours = pick.choice("subject-colour", palette)
        subject_desc = f"{_sentence(subject)}, the main subject, with {colour_name} as its dominant colour."
        subject_colours = [colours]
    else:
        subject_desc, subject_colours = f"{_sentence(subject)}, the main subject, in its own named colours.", None
    elements = [_element("obj", subject_desc, subject_box if with_bboxes else None, pick, "subject", subject_colours)]
    for index, text in enumerate(request.texts):
        colour = pick.choice(f"text-colour-{index}", palette)
        size = "Large" if index == 0 else pick.choice(f"text-size-{index}", ("Medium", "Small"))
        lettering = pick.choice(f"lettering-{index}", LETTERING)
        elements.append(
            _element(
                "text",
                f"{size} {colour[0]} lettering in {lettering}, clearly legible and evenly spaced.",
                text_boxes[index] if with_bboxes else None,
                pick,
                f"text-{index}",
                [colour[1]],
                text=text,
            )
        )
    if pick.chance("prop", 50):
        prop = pick.choice("prop-name", PROPS.get(request.category or "", DEFAULT_PROPS))
        colour = pick.choice("prop-colour", palette)
        box = (820, 40, 980, 300) if pick.chance("prop-side", 50) else (820, 700, 980, 960)
        elements.append(
            _element(
                "obj",
                f"{_sentence(prop)} in {colour[0]}, off to one side.",
                box if with_bboxes else None,
                pick,
                "prop",
                [colour[1]],
            )
        )
    if pick.chance("subject-last", 25) and len(elements) > 1:
        elements.append(elements.pop(0))

    return {
        "high_level_description": f"{_sentence(request.raw)}, presented as {MEDIUM_PHRASES[look.medium]}.",
        "style_description": style,
        "compositional_deconstruction": {
            "background": _sentence(pick.choice("background", look.backgrounds)) + ".",
            "elements": elements,
        },
    }


def _element(
    kind: str,
    desc: str,
    box: Sequence[int] | None,
    pick: _Picker,
    slot: str,
    colours: list[str] | None,
    *,
    text: str | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {"type": kind}
    if box is not None:
        element["bbox"] = _jitter(box, pick, slot)
    if text is not None:
        element["text"] = text
    element["desc"] = desc
    if colours and pick.chance(f"{slot}-palette", 60):
        element["color_palette"] = colours
    return element


def _jitter(box: Sequence[int], pick: _Picker, slot: str) -> list[int]:
    moved = [min(1000, max(0, v + pick.integer(f"{slot}-jitter-{i}", -JITTER, JITTER))) for i, v in enumerate(box)]
    y_min, x_min, y_max, x_max = moved
    return [min(y_min, y_max), min(x_min, x_max), max(y_min, y_max), max(x_min, x_max)]
