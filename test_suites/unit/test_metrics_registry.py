"""The registry contract: every metric has a name, a direction and declared inputs; ``load`` builds it once; ``score``
returns one float64 per image, whatever the batching, and the same numbers every time."""

import inspect
import subprocess
import sys

import numpy as np
import pytest

from quantkit.metrics import INPUTS, available, load
from quantkit.metrics.catalog import CATALOG, FAMILIES, names
from quantkit.metrics.registry import metric_class

EXPECTED = {
    "clip": ("higher", {"prompts"}),
    "hpsv2": ("higher", {"prompts"}),
    "pickscore": ("higher", {"prompts"}),
    "ocr_exact": ("higher", {"texts"}),
    "ocr_ned": ("lower", {"texts"}),
    "psnr": ("higher", {"references"}),
    "ssim": ("higher", {"references"}),
    "lpips": ("lower", {"references"}),
}


def test_every_metric_declares_its_name_direction_and_inputs():
    assert available() == sorted(EXPECTED)
    for name, (direction, needs) in EXPECTED.items():
        cls = metric_class(name)
        assert (cls.name, cls.direction, set(cls.needs)) == (name, direction, needs)
        assert cls.needs <= INPUTS


def test_the_catalog_gives_every_metric_one_family_and_fidelity_is_what_compares_with_the_reference():
    assert sorted(m for family in FAMILIES for m in names(family)) == available()
    assert names("fidelity") == ("psnr", "ssim", "lpips")
    assert [m for m, info in CATALOG.items() if info.compares_with_reference] == list(names("fidelity"))
    assert {m for m, info in CATALOG.items() if "texts" in info.needs} == set(names("text"))


def test_reading_the_catalog_imports_no_torch():
    code = (
        "import sys, quantkit.metrics.catalog, quantkit.metrics, quantkit.stats, quantkit.profiles; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_metric_takes_device_and_batch_size(name):
    accepted = set()
    for klass in metric_class(name).__mro__:  # subclasses may pass options through to their base
        if "__init__" in vars(klass):
            accepted |= set(inspect.signature(klass.__init__).parameters)
    assert {"device", "batch_size"} <= accepted


def test_metrics_without_weights_load_for_any_device_option():
    for name in ("psnr", "ssim", "ocr_exact", "ocr_ned"):
        assert load(name, device="cpu", batch_size=4).batch_size == 4


def test_an_unknown_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match="available: clip, hpsv2"):
        load("fid")


def test_load_returns_the_same_object_for_the_same_options():
    assert load("psnr") is load("psnr")
    assert load("psnr", cap_db=50.0) is not load("psnr")


@pytest.fixture
def pairs():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    references = np.clip(images.astype(int) + rng.integers(-30, 31, images.shape), 0, 255).astype(np.uint8)
    return images, references


@pytest.mark.parametrize("name", ["psnr", "ssim"])
def test_one_float64_per_image_independent_of_batch_size(pairs, name):
    images, references = pairs
    whole = load(name).score(images, references=references)
    assert whole.dtype == np.float64 and whole.shape == (5,)
    np.testing.assert_array_equal(load(name, batch_size=2).score(images, references=references), whole)
    np.testing.assert_array_equal(load(name).score(images, references=references), whole)  # deterministic


def test_an_empty_batch_scores_to_an_empty_array():
    assert load("psnr").score([], references=[]).shape == (0,)


def test_inputs_a_metric_does_not_need_are_ignored(pairs):
    images, references = pairs
    values = load("psnr").score(images, references=references, prompts=None, texts=[["unused"]])
    assert values.shape == (5,)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        load("psnr", batch_size=0)
