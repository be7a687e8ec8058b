"""Fidelity to a reference image (the unquantized variant's output for the same prompt and seed): PSNR, SSIM, LPIPS.

Images are compared in the canonical [0, 1] form, so ``data_range`` is 1 (equivalently 255 on uint8 images). Each
image must have the same size as its reference.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from quantkit.errors import CheckpointError
from quantkit.metrics import weights
from quantkit.metrics.registry import Metric, resolve_device


class PSNR(Metric):
    """``10 * log10(data_range**2 / MSE)`` per image, MSE over all pixels and channels (in float64).

    Identical images (MSE 0, PSNR infinite) score ``cap_db`` (default 100 dB, an RMSE of 1e-5 of the range); no
    score exceeds the cap, so bootstrap means stay finite.
    """

    name = "psnr"

    def __init__(self, *, cap_db: float = 100.0, device: str | None = None, batch_size: int = 16) -> None:
        super().__init__(batch_size=batch_size)
        self.cap_db = cap_db
        self.device = resolve_device(device)
        self.info = {"data_range": "1.0 on [0, 1] images", "cap_db": str(cap_db)}

    def _score_chunk(self, images, *, prompts, references, texts) -> np.ndarray:
        values = []
        for image, reference in _same_shape_runs(images, references):
            image, reference = image.to(self.device).double(), reference.to(self.device).double()
            mse = _per_image_mean((image - reference).pow(2))
            psnr = [self.cap_db if m == 0 else min(self.cap_db, -10.0 * math.log10(m)) for m in mse.tolist()]
            values.extend(psnr)
        return np.array(values)


def _per_image_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dim, one image at a time: a batched reduction may split its sums across threads
    differently, and a score must not depend on which other images shared its batch."""
    return torch.stack([v.mean() for v in values])


class SSIM(Metric):
    """Structural similarity with Wang et al.'s settings: 11 x 11 Gaussian window (sigma 1.5, truncated at 3.5
    sigma), K1 0.01, K2 0.03, population (not sample) covariances, explicit ``data_range`` (1.0 for [0, 1] images).

    Computed per RGB channel on the 'valid' region (no padding: the border of 5 pixels is left out) and averaged over
    pixels and channels, which is exactly scikit-image's ``structural_similarity(a, b, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=..., channel_axis=-1)``. float64 throughout.
    """

    name = "ssim"

    def __init__(
        self,
        *,
        data_range: float = 1.0,
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        device: str | None = None,
        batch_size: int = 8,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.data_range, self.k1, self.k2 = data_range, k1, k2
        self.device = resolve_device(device)
        self.kernel = gaussian_kernel(sigma).to(self.device)
        self.info = {
            "window": f"gaussian {len(self.kernel)} sigma {sigma}",
            "k1": str(k1),
            "k2": str(k2),
            "data_range": str(data_range),
        }

    def _score_chunk(self, images, *, prompts, references, texts) -> np.ndarray:
        values = []
        for image, reference in _same_shape_runs(images, references):
            values.append(self._ssim(image.to(self.device), reference.to(self.device)).cpu().numpy())
        return np.concatenate(values)

    def _ssim(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.double(), y.double()
        height, width = x.shape[-2:]
        size = len(self.kernel)
        if height < size or width < size:
            raise ValueError(f"ssim needs images of at least {size} x {size} pixels, got {height} x {width}")
        stats = _filter_valid(torch.stack([x, y, x * x, y * y, x * y], dim=2), self.kernel)
        ux, uy, uxx, uyy, uxy = stats.unbind(dim=2)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        c1, c2 = (self.k1 * self.data_range) ** 2, (self.k2 * self.data_range) ** 2
        ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        return _per_image_mean(ssim_map)


def _filter_valid(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable correlation over the last two axes, 'valid' region only, as weighted sums of shifted views
    (float64 convolution has no fast CPU kernel in torch)."""
    weights = kernel.tolist()
    rows = x.shape[-2] - len(weights) + 1
    along_rows = x[..., :rows, :] * weights[0]
    for k, weight in enumerate(weights[1:], start=1):
        along_rows.add_(x[..., k : k + rows, :], alpha=weight)
    cols = x.shape[-1] - len(weights) + 1
    out = along_rows[..., :cols] * weights[0]
    for k, weight in enumerate(weights[1:], start=1):
        out.add_(along_rows[..., k : k + cols], alpha=weight)
    return out


def gaussian_kernel(sigma: float, truncate: float = 3.5) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian (radius ``int(truncate * sigma + 0.5)``), normalised to sum 1, float64."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 / sigma**2 * x * x)
    return kernel / kernel.sum()


class LPIPS(Metric):
    """LPIPS (``lpips`` package, AlexNet, v0.1 linear heads from the wheel) per image; inputs mapped to [-1, 1].

    The AlexNet backbone is the torchvision ImageNet checkpoint, read from a local file (see
    :func:`quantkit.metrics.weights.lpips_backbone`) instead of torchvision's download. Runs in fp32 on every device:
    the network is small and fidelity differences between variants are small.
    """

    name = "lpips"

    def __init__(self, *, backbone: str | os.PathLike | None = None, device: str | None = None, batch_size: int = 8):
        import lpips

        super().__init__(batch_size=batch_size)
        path = weights.lpips_backbone(backbone)
        self.device = resolve_device(device)
        with warnings.catch_warnings():  # lpips still calls torchvision's deprecated alexnet(pretrained=...)
            warnings.filterwarnings("ignore", message=".*deprecated since 0.13", category=UserWarning)
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        model.net.load_state_dict(_lpips_backbone_state(path, model.net.state_dict()), strict=True)
        self.model = model.eval().to(self.device)
        self.info = {"model": "lpips 0.1 alex", "backbone": str(path)}

    @classmethod
    def check(cls, *, backbone: str | os.PathLike | None = None, **_: object) -> None:
        weights.lpips_backbone(backbone)

    def _score_chunk(self, images, *, prompts, references, texts) -> np.ndarray:
        values = []
        for image, reference in _same_shape_runs(images, references):
            with torch.inference_mode():
                distance = self.model(image.to(self.device) * 2 - 1, reference.to(self.device) * 2 - 1)
            values.append(distance.reshape(-1).double().cpu().numpy())
        return np.concatenate(values)


def _lpips_backbone_state(path: os.PathLike, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision's ``features.<i>.<param>`` onto lpips' ``slice<k>.<i>.<param>`` (same layers, regrouped)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable torchvision AlexNet state dict: {error}") from error
    mapped = {}
    for key, tensor in expected.items():
        source = "features." + key.split(".", 1)[1]
        if source not in state or state[source].shape != tensor.shape:
            raise CheckpointError(f"{path}: no {source} of shape {tuple(tensor.shape)}; is it torchvision's AlexNet?")
        mapped[key] = state[source]
    return mapped


def _same_shape_runs(
    images: list[torch.Tensor], references: list[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stacked (images, references) over consecutive pairs of one size, in order."""
    for image, reference in zip(images, references, strict=True):
        if image.shape != reference.shape:
            raise ValueError(
                f"an image of shape {tuple(image.shape)} has a reference of shape {tuple(reference.shape)}; "
                "fidelity metrics compare images of the same size"
            )
    start = 0
    while start < len(images):
        stop = start + 1
        while stop < len(images) and images[stop].shape == images[start].shape:
            stop += 1
        yield torch.stack(images[start:stop]), torch.stack(references[start:stop])
        start = stop
