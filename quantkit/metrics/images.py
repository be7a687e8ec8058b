"""One canonical image form for every metric: a list of float32 CPU tensors, 3 x H x W, values in [0, 1].

Metrics accept what callers have: a list of PIL images, of numpy arrays (H x W x C, the numpy convention) or of torch
tensors (C x H x W, the torch convention), or one 4-D array (N x H x W x C) / tensor (N x C x H x W). uint8 data is
divided by 255, so a PNG and its tensor give bit-identical canonical images; float data must already lie in [0, 1]
(images in [-1, 1] are rejected rather than silently mis-scored). Grayscale is repeated to RGB; alpha is refused for
arrays (PIL images are converted with ``Image.convert("RGB")``). A list rather than a stacked tensor, because
benchmark prompts may ask for different aspect ratios within one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

ImageBatch = Sequence[Any] | np.ndarray | torch.Tensor


def split(images: ImageBatch, what: str = "images") -> list[Any]:
    """The items of a batch, without converting them (cheap: a 4-D tensor yields views)."""
    if isinstance(images, Image.Image):
        raise ValueError(f"{what}: expected a batch (a list of images or a 4-D array), got a single PIL image")
    if isinstance(images, np.ndarray | torch.Tensor):
        if images.ndim != 4:
            raise ValueError(
                f"{what}: a batch array must be 4-D (numpy N x H x W x C, torch N x C x H x W), "
                f"got shape {tuple(images.shape)}"
            )
        return list(images)
    if isinstance(images, str | bytes) or not isinstance(images, Sequence):
        raise ValueError(f"{what}: expected a list of images or a 4-D array, got {type(images).__name__}")
    return list(images)


def to_tensors(items: Sequence[Any], what: str = "images") -> list[torch.Tensor]:
    """Convert items (as returned by :func:`split`) to the canonical form."""
    return [_to_tensor(item, f"{what}[{index}]") for index, item in enumerate(items)]


def as_images(images: ImageBatch, what: str = "images") -> list[torch.Tensor]:
    """The whole batch in canonical form."""
    return to_tensors(split(images, what), what)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """H x W x 3 uint8 array of a canonical image (round to nearest; exact inverse of the uint8 -> float step)."""
    return (image.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(image), mode="RGB")


def _to_tensor(item: Any, where: str) -> torch.Tensor:
    if isinstance(item, Image.Image):
        array = np.asarray(item.convert("RGB"))
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
    if isinstance(item, np.ndarray):
        if item.ndim == 3:
            item = np.moveaxis(item, -1, 0)  # H x W x C -> C x H x W
        tensor = torch.from_numpy(np.ascontiguousarray(item))
    elif isinstance(item, torch.Tensor):
        tensor = item.detach().cpu()
    else:
        raise ValueError(f"{where}: unsupported image type {type(item).__name__} (use PIL, numpy or torch)")
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(
            f"{where}: expected 1 or 3 channels (numpy H x W x C, torch C x H x W), got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    if not tensor.is_floating_point():
        raise ValueError(f"{where}: dtype {tensor.dtype} not supported; use uint8 (0..255) or float (0..1)")
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{where}: contains NaN or Inf")
    low, high = tensor.min().item(), tensor.max().item()
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{where}: float images must lie in [0, 1], got [{low:.4g}, {high:.4g}] "
            "(for images in [-1, 1] pass (x + 1) / 2)"
        )
    return tensor.contiguous()
