"""Per-image metrics for the quality-regression harness: quality (hpsv2, clip, pickscore), text rendering
(ocr_exact, ocr_ned) and fidelity to a reference image (psnr, ssim, lpips).

    metric = load("ssim")
    values = metric.score(images, references=reference_images)   # np.ndarray, one float per image

See :mod:`quantkit.metrics.registry` for the contract and :mod:`quantkit.metrics.weights` for where learned metrics
find their weights.
"""

from quantkit.metrics.registry import INPUTS, Direction, Metric, availability, available, load

__all__ = ["INPUTS", "Direction", "Metric", "availability", "available", "load"]
