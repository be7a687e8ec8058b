"""Per-image metrics for the quality-regression harness: quality (hpsv2, clip, pickscore), text rendering
(ocr_exact, ocr_ned) and fidelity to a reference image (psnr, ssim, lpips).

    metric = load("ssim")
    values = metric.score(images, references=reference_images)   # np.ndarray, one float per image

See :mod:`quantkit.metrics.catalog` for what each metric is (torch-free), :mod:`quantkit.metrics.registry` for the
scoring contract and :mod:`quantkit.metrics.weights` for where learned metrics find their weights. The registry is
imported lazily, so reading the catalog never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from quantkit.metrics.catalog import INPUTS, Direction

_REGISTRY = ("Metric", "availability", "available", "load")
__all__ = ["INPUTS", "Direction", "Metric", "availability", "available", "load"]


def __getattr__(name: str) -> Any:
    if name in _REGISTRY:
        return getattr(importlib.import_module("quantkit.metrics.registry"), name)
    raise AttributeError(f"module 'quantkit.metrics' has no attribute {name!r}")
