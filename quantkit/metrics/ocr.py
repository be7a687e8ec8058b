"""Text rendering: read each image with PP-OCR and compare what it says with the caption's literal text elements.

Definitions (the same for every backend):

* **Normalisation** of both OCR output and targets: Unicode NFKC (full-width and compatibility forms fold to their
  plain equivalents), every run of whitespace collapsed to one space, leading/trailing space stripped, then the case
  policy: ``case="fold"`` (default, ``str.casefold``) or ``case="sensitive"``. Punctuation and accents are kept.
* **Reading order**: detected boxes are grouped into lines (a box joins a line when their vertical extents overlap by
  at least half the smaller height), lines run top to bottom, boxes within a line left to right; the texts are joined
  with single spaces (lines too), giving one normalised string per image.
* **Per element**: the candidates are every contiguous run of whole words of that string (and the empty string when
  nothing was read). ``ned`` is the smallest normalised Levenshtein distance ``lev(target, run) / max(len(target),
  len(run))`` over the candidates (rapidfuzz; 0 = identical, 1 = nothing in common); the element is an **exact
  match** when ``ned == 0``, i.e. the target appears verbatim, on word boundaries, in reading order.
* **Per image**: ``ocr_exact`` is the fraction of the image's elements read exactly (``mode="all"``: 1 only if all
  are); ``ocr_ned`` is the mean element ``ned``. An image with no target text scores NaN (not applicable).

The default backend is RapidOCR with the PP-OCRv6 detection and recognition models its wheel ships (no download);
``backend="paddleocr"`` uses PaddleOCR 3.x when installed. Engines are built once per process, and each distinct
image is read once, however many text metrics score it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import unicodedata
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from quantkit.metrics.images import ImageBatch, as_images, to_uint8
from quantkit.metrics.registry import Metric

CasePolicy = Literal["fold", "sensitive"]
BACKENDS = ("rapidocr", "paddleocr")


@dataclass(frozen=True)
class Detection:
    """One text box: ``box`` is 4 x 2 corner coordinates (x, y) in pixels."""

    box: np.ndarray
    text: str
    score: float


@dataclass(frozen=True)
class ElementMatch:
    """How one target element was read: the closest run of the OCR text and its distance."""

    target: str
    read: str
    ned: float

    @property
    def exact(self) -> bool:
        return self.ned == 0.0


def normalise(text: str, case: CasePolicy = "fold") -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    if case == "fold":
        return text.casefold()
    if case == "sensitive":
        return text
    raise ValueError(f"case must be 'fold' or 'sensitive', got {case!r}")


def reading_order(detections: Sequence[Detection]) -> list[list[Detection]]:
    """Lines top to bottom, each left to right."""
    lines: list[tuple[float, float, list[Detection]]] = []  # (top, bottom, boxes)
    for detection in sorted(detections, key=lambda d: float(d.box[:, 1].mean())):
        top, bottom = float(detection.box[:, 1].min()), float(detection.box[:, 1].max())
        for index, (line_top, line_bottom, members) in enumerate(lines):
            overlap = min(bottom, line_bottom) - max(top, line_top)
            if overlap >= 0.5 * min(bottom - top, line_bottom - line_top):
                members.append(detection)
                lines[index] = (min(top, line_top), max(bottom, line_bottom), members)
                break
        else:
            lines.append((top, bottom, [detection]))
    lines.sort(key=lambda line: (line[0] + line[1]) / 2)
    return [sorted(members, key=lambda d: float(d.box[:, 0].min())) for _, _, members in lines]


def join_text(detections: Sequence[Detection], case: CasePolicy = "fold") -> str:
    """The normalised text of an image in reading order."""
    return normalise(" ".join(d.text for line in reading_order(detections) for d in line), case)


def match_elements(read: str, targets: Sequence[str], case: CasePolicy = "fold") -> list[ElementMatch]:
    """Match each target against the normalised OCR string ``read`` (see the module docstring)."""
    words = read.split(" ") if read else []
    runs = [" ".join(words[start:stop]) for start in range(len(words)) for stop in range(start + 1, len(words) + 1)]
    matches = []
    for index, raw in enumerate(targets):
        target = normalise(raw, case)
        if not target:
            raise ValueError(f"target text {index} ({raw!r}) is empty after normalisation")
        best, distance, _ = process.extractOne(target, runs or [""], scorer=Levenshtein.normalized_distance)
        matches.append(ElementMatch(target=target, read=best, ned=float(distance)))
    return matches


class _OcrMetric(Metric):
    def __init__(
        self,
        *,
        backend: str = "rapidocr",
        case: CasePolicy = "fold",
        device: str | None = None,
        batch_size: int = 8,
    ) -> None:
        """``device`` is accepted like every metric's, but both engines run on the CPU here (onnxruntime / paddle
        CPU builds); OCR cost is a CPU cost whatever the GPU."""
        super().__init__(batch_size=batch_size)
        self.check(backend=backend)
        normalise("", case)  # validates the policy now rather than at the first score
        self.backend, self.case = backend, case
        self.reader = functools.partial(read_text_boxes, backend)
        version = importlib.metadata.version(backend)
        self.info = {"backend": f"{backend} {version}", "models": _MODELS[backend], "case": case}

    @classmethod
    def check(cls, *, backend: str = "rapidocr", **_: object) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"OCR backend must be one of {BACKENDS}, got {backend!r}")
        for module, install in _REQUIRES[backend]:
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(f"OCR backend {backend!r} needs the {module} package: {install}")

    def read(self, images: ImageBatch) -> list[str]:
        """The normalised text of each image, in reading order."""
        return [join_text(self.reader(to_uint8(image)), self.case) for image in as_images(images)]

    def elements(self, images: ImageBatch, texts: Sequence[Sequence[str]]) -> list[list[ElementMatch]]:
        """Per image, how each target element was read (for reports and failure messages)."""
        return [
            match_elements(read, targets, self.case) for read, targets in zip(self.read(images), texts, strict=True)
        ]

    def _score_chunk(self, images, *, prompts, references, texts) -> np.ndarray:
        values = np.full(len(images), np.nan)  # NaN: the image has no target text
        todo = [index for index, targets in enumerate(texts) if targets]
        found = self.elements([images[index] for index in todo], [texts[index] for index in todo])
        for index, matches in zip(todo, found, strict=True):
            values[index] = self._aggregate(matches)
        return values

    @abstractmethod
    def _aggregate(self, matches: list[ElementMatch]) -> float:
        """One value per image from its elements' matches."""


class OcrExact(_OcrMetric):
    """Fraction of the image's text elements read back exactly (``mode="all"``: 1.0 only when every one is)."""

    name = "ocr_exact"

    def __init__(self, *, mode: Literal["elements", "all"] = "elements", **options) -> None:
        if mode not in ("elements", "all"):
            raise ValueError(f"ocr_exact mode must be 'elements' or 'all', got {mode!r}")
        super().__init__(**options)
        self.mode = mode
        self.info["mode"] = mode

    def _aggregate(self, matches: list[ElementMatch]) -> float:
        exact = [match.exact for match in matches]
        return float(all(exact)) if self.mode == "all" else float(np.mean(exact))


class OcrNed(_OcrMetric):
    """Mean normalised edit distance between each text element and its closest run of the OCR text."""

    name = "ocr_ned"

    def _aggregate(self, matches: list[ElementMatch]) -> float:
        return float(np.mean([match.ned for match in matches]))


_REQUIRES = {
    "rapidocr": [("rapidocr", "pip install rapidocr"), ("onnxruntime", "pip install onnxruntime")],
    "paddleocr": [("paddleocr", "pip install paddleocr"), ("paddle", "pip install paddlepaddle")],
}
_MODELS = {
    "rapidocr": "PP-OCRv6 small det/rec + PP-OCRv4 mobile cls (bundled with rapidocr)",
    "paddleocr": "PaddleOCR 3.x defaults (PP-OCRv5 server det/rec)",
}


_READS: OrderedDict[tuple[str, tuple[int, ...], bytes], list[Detection]] = OrderedDict()
_READS_KEPT = 4096


def read_text_boxes(backend: str, rgb: np.ndarray) -> list[Detection]:
    """The detections in an RGB uint8 H x W x 3 image. Remembered per image content (the most recent 4096), so
    ``ocr_exact`` and ``ocr_ned`` on the same images run the engine once."""
    key = (backend, rgb.shape, hashlib.blake2b(rgb.tobytes(), digest_size=16).digest())
    if key in _READS:
        _READS.move_to_end(key)
        return _READS[key]
    detections = _engine(backend)(rgb)
    _READS[key] = detections
    if len(_READS) > _READS_KEPT:
        _READS.popitem(last=False)
    return detections


@functools.cache
def _engine(backend: str) -> Callable[[np.ndarray], list[Detection]]:
    """A function from an RGB uint8 H x W x 3 array to detections; engines load once per process."""
    if backend == "rapidocr":
        from rapidocr import RapidOCR

        engine = RapidOCR(params={"Global.log_level": "error"})

        def read_rapidocr(rgb: np.ndarray) -> list[Detection]:
            output = engine(np.ascontiguousarray(rgb[..., ::-1]))  # numpy input is taken as BGR
            if output.txts is None:
                return []
            return [
                Detection(np.asarray(box, dtype=np.float64), text, float(score))
                for box, text, score in zip(output.boxes, output.txts, output.scores, strict=True)
            ]

        return read_rapidocr

    from paddleocr import PaddleOCR

    engine = PaddleOCR(use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=False)

    def read_paddleocr(rgb: np.ndarray) -> list[Detection]:
        detections = []
        for result in engine.predict(np.ascontiguousarray(rgb[..., ::-1])):
            for box, text, score in zip(result["rec_polys"], result["rec_texts"], result["rec_scores"], strict=True):
                detections.append(Detection(np.asarray(box, dtype=np.float64), text, float(score)))
        return detections

    return read_paddleocr
