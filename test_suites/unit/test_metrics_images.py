"""Every image form a caller has becomes the same canonical tensor: 3 x H x W float32 in [0, 1]."""

import numpy as np
import pytest
import torch
from PIL import Image

from quantkit.metrics.images import as_images, split, to_pil, to_uint8


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)


def test_pil_numpy_and_torch_forms_give_identical_canonical_images(rgb):
    forms = [
        [Image.fromarray(image) for image in rgb],
        rgb,
        list(rgb),
        torch.from_numpy(rgb).permute(0, 3, 1, 2),
        [torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in rgb],
        rgb.astype(np.float64) / 255,
    ]
    expected = as_images(forms[0])
    assert expected[0].shape == (3, 5, 7) and expected[0].dtype == torch.float32
    for form in forms[1:]:
        got = as_images(form)
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_uint8_round_trip_is_exact(rgb):
    images = as_images(rgb)
    assert np.array_equal(to_uint8(images[0]), rgb[0])
    assert np.array_equal(np.asarray(to_pil(images[1])), rgb[1])


def test_grayscale_is_repeated_to_rgb_and_rgba_pil_is_flattened():
    gray = np.full((4, 4), 128, dtype=np.uint8)
    (image,) = as_images([gray])
    assert image.shape == (3, 4, 4) and torch.all(image == 128 / 255)
    (rgba,) = as_images([Image.new("RGBA", (4, 4), (10, 20, 30, 0))])
    assert torch.allclose(rgba[:, 0, 0], torch.tensor([10, 20, 30]) / 255)


def test_images_of_different_sizes_can_share_a_batch():
    images = as_images([np.zeros((4, 6, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)])
    assert [tuple(image.shape) for image in images] == [(3, 4, 6), (3, 8, 8)]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (Image.new("RGB", (4, 4)), "single PIL image"),
        (np.zeros((4, 4, 3), np.uint8), "4-D"),
        ("image.png", "list of images"),
        ([np.full((4, 4, 3), -1.0)], r"\[0, 1\]"),
        ([np.full((4, 4, 3), np.nan)], "NaN"),
        ([np.zeros((4, 4, 4), np.uint8)], "1 or 3 channels"),
        ([np.zeros((4, 4, 3), np.int32)], "dtype"),
        ([object()], "unsupported image type"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(batch, message):
    with pytest.raises(ValueError, match=message):
        as_images(batch)


def test_splitting_a_tensor_batch_does_not_copy():
    batch = torch.zeros(3, 3, 4, 4)
    items = split(batch)
    assert len(items) == 3 and items[1].data_ptr() == batch[1].data_ptr()
