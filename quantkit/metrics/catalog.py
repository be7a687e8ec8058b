"""The metric catalog: what every metric is, in one torch-free table that the study, the gate profiles, the plugin,
the report and the registry all read.

A metric's family says what it judges: ``quality`` (the image alone, against its prompt), ``text`` (the rendered
text, read back by OCR; only prompts with target texts are scored) or ``fidelity`` (the image against the reference
variant's image of the same prompt and seed, so the reference itself has no fidelity scores).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Direction = Literal["higher", "lower"]
Family = Literal["quality", "text", "fidelity"]
FAMILIES: tuple[Family, ...] = ("quality", "text", "fidelity")
INPUTS = frozenset({"prompts", "references", "texts"})


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """One metric: ``needs`` are the inputs it reads besides the images, ``target`` the ``module:Class`` that
    scores it (imported only when a metric is loaded)."""

    name: str
    family: Family
    label: str
    direction: Direction
    needs: frozenset[str]
    target: str

    @property
    def compares_with_reference(self) -> bool:
        """Scored against the reference variant's image (fidelity), not on the image alone."""
        return "references" in self.needs


CATALOG: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("hpsv2", "quality", "HPSv2", "higher", frozenset({"prompts"}), "quantkit.metrics.quality:HPSv2"),
        MetricInfo("clip", "quality", "CLIP", "higher", frozenset({"prompts"}), "quantkit.metrics.quality:ClipScore"),
        MetricInfo(
            "pickscore", "quality", "PickScore", "higher", frozenset({"prompts"}), "quantkit.metrics.quality:PickScore"
        ),
        MetricInfo("ocr_exact", "text", "OCR EM", "higher", frozenset({"texts"}), "quantkit.metrics.ocr:OcrExact"),
        MetricInfo("ocr_ned", "text", "OCR NED", "lower", frozenset({"texts"}), "quantkit.metrics.ocr:OcrNed"),
        MetricInfo("psnr", "fidelity", "PSNR", "higher", frozenset({"references"}), "quantkit.metrics.fidelity:PSNR"),
        MetricInfo("ssim", "fidelity", "SSIM", "higher", frozenset({"references"}), "quantkit.metrics.fidelity:SSIM"),
        MetricInfo("lpips", "fidelity", "LPIPS", "lower", frozenset({"references"}), "quantkit.metrics.fidelity:LPIPS"),
    )
}


def names(family: Family | None = None) -> tuple[str, ...]:
    """The metrics of ``family`` (all of them when None), in catalog order."""
    return tuple(name for name, info in CATALOG.items() if family is None or info.family == family)


def label(name: str) -> str:
    """The column title of a metric in tables (its name when the catalog does not know it)."""
    info = CATALOG.get(name)
    return info.label if info else name


def compares_with_reference(name: str) -> bool:
    """Whether metric ``name`` scores an image against the reference's (False for names the catalog does not know)."""
    return name in CATALOG and CATALOG[name].compares_with_reference
