"""Images per second for each metric on CPU at 512 x 512 (``extra_info["images_per_second"]``).

Real figures: ocr_exact / ocr_ned (PP-OCRv6 via RapidOCR), psnr, ssim, and lpips (its AlexNet backbone is random
here but costs the same as the ImageNet one). hpsv2, clip and pickscore run tiny random networks, so their figures
time only the plumbing (resize, tokenise, batch); their real cost is a ViT-H/L forward, to be timed on the GPU runner.
"""

import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from quantkit.metrics import load
from quantkit.metrics.tiny import save_random_alexnet, save_tiny_open_clip, save_tiny_pickscore

SIZE = 512
COUNT = 2  # images per timed call, kept small so the default test run stays quick on a shared CPU
OCR_COUNT = 1  # an OCR read is ~0.5-3 s of CPU per image
_fresh = itertools.count()


@pytest.fixture(scope="module")
def signs():
    import matplotlib

    font = ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf", 48)
    images = []
    for index in range(COUNT):
        image = Image.new("RGB", (SIZE, SIZE), (240, 235, 220))
        ImageDraw.Draw(image).text((40, 200), f"OPEN {index} DAYS", fill=(30, 30, 30), font=font)
        images.append(np.asarray(image))
    return np.stack(images)


def fresh(images: np.ndarray) -> np.ndarray:
    """The same images with one pixel changed per call, so OCR's per-image memory never answers a timed call."""
    images = images.copy()
    images[:, 0, 0, 0] = next(_fresh) % 256
    return images


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-weights")
    arch, _ = save_tiny_open_clip(folder / "open_clip")
    save_tiny_pickscore(folder / "pickscore")
    alexnet = save_random_alexnet(folder / "torch-home")
    return {
        "hpsv2": lambda: load("hpsv2", checkpoint=str(folder / "open_clip"), arch=arch, device="cpu"),
        "clip": lambda: load("clip", model=arch, pretrained=None, device="cpu"),
        "pickscore": lambda: load("pickscore", model_dir=str(folder / "pickscore"), device="cpu"),
        "ocr_exact": lambda: load("ocr_exact"),
        "ocr_ned": lambda: load("ocr_ned"),
        "psnr": lambda: load("psnr"),
        "ssim": lambda: load("ssim", device="cpu"),
        "lpips": lambda: load("lpips", backbone=str(alexnet), device="cpu"),
    }


@pytest.mark.parametrize("name", ["hpsv2", "clip", "pickscore", "ocr_exact", "ocr_ned", "psnr", "ssim", "lpips"])
def test_images_per_second_at_512(benchmark, metrics, signs, name):
    metric = metrics[name]()
    count = OCR_COUNT if "texts" in metric.needs else COUNT
    images = signs[:count]
    inputs = {
        "prompts": ["a shop sign that says OPEN"] * count,
        "references": images[::-1].copy(),
        "texts": [[f"OPEN {index} DAYS"] for index in range(count)],
    }
    kwargs = {key: inputs[key] for key in metric.needs}
    metric.score(fresh(images), **kwargs)  # warm up: engines that load lazily do it now, untimed
    values = benchmark.pedantic(metric.score, setup=lambda: ((fresh(images),), kwargs), rounds=2, iterations=1)
    assert values.shape == (count,) and np.isfinite(values).all()
    if not benchmark.disabled:  # --benchmark-disable runs the target once and keeps no statistics
        benchmark.extra_info["images_per_second"] = count / benchmark.stats.stats.median
        benchmark.extra_info["real_weights_cost"] = name not in ("hpsv2", "clip", "pickscore")
