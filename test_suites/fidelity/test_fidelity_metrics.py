"""PSNR, SSIM and LPIPS on real photographs (scikit-image's bundled astronaut, coffee and chelsea) against their
references: scikit-image for PSNR/SSIM, the lpips package's own loading path for LPIPS."""

import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image, ImageFilter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from quantkit.metrics import availability, load
from quantkit.metrics.fidelity import LPIPS
from quantkit.metrics.tiny import save_random_alexnet


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def blur(image: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def noise(image: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos():
    """Three real photographs, cropped to 256 x 256 (a different crop of each) to keep the suite quick."""
    return [skimage.data.astronaut()[:256, 128:384], skimage.data.coffee()[100:356, 200:456], skimage.data.chelsea()]


DISTORTIONS = {
    "jpeg q20": lambda image: jpeg(image, 20),
    "blur r2": lambda image: blur(image, 2),
    "noise s12": lambda image: noise(image, 12),
}


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a / 255.0,
        b / 255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )


@pytest.mark.parametrize("distortion", sorted(DISTORTIONS))
def test_ssim_agrees_with_scikit_image_wang_settings(photos, distortion):
    distorted = [DISTORTIONS[distortion](photo) for photo in photos]
    expected = [skimage_ssim(a, b) for a, b in zip(distorted, photos, strict=True)]
    np.testing.assert_allclose(load("ssim").score(distorted, references=photos), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("distortion", sorted(DISTORTIONS))
def test_psnr_agrees_with_scikit_image_per_image(photos, distortion):
    distorted = [DISTORTIONS[distortion](photo) for photo in photos]
    expected = [peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(distorted, photos, strict=True)]
    # canonical images are float32 (uint8 / 255), hence agreement to float32 precision rather than exactly
    np.testing.assert_allclose(load("psnr").score(distorted, references=photos), expected, rtol=1e-7)


def test_identical_images_score_the_cap_and_perfect_similarity(photos):
    assert load("psnr").score(photos, references=photos).tolist() == [100.0] * 3
    assert load("psnr", cap_db=60.0).score(photos, references=photos).tolist() == [60.0] * 3
    np.testing.assert_allclose(load("ssim").score(photos, references=photos), 1.0, atol=1e-12)


def test_more_damage_scores_worse(photos):
    mild = [jpeg(photo, 90) for photo in photos]
    heavy = [jpeg(photo, 10) for photo in photos]
    for name in ("psnr", "ssim"):
        metric = load(name)
        assert (metric.score(mild, references=photos) > metric.score(heavy, references=photos)).all()


def test_a_mixed_size_batch_scores_each_pair_as_alone(photos):
    distorted = [blur(photo, 1) for photo in photos]  # chelsea is 300 x 451, the crops 256 x 256
    ssim = load("ssim", batch_size=3)
    together = ssim.score(distorted, references=photos)
    alone = [ssim.score([a], references=[b])[0] for a, b in zip(distorted, photos, strict=True)]
    np.testing.assert_array_equal(together, alone)


def test_references_are_required_and_must_match_in_size(photos):
    with pytest.raises(ValueError, match="needs references="):
        load("psnr").score(photos)
    with pytest.raises(ValueError, match="same size"):
        load("ssim").score(photos[:1], references=photos[2:])
    with pytest.raises(ValueError, match="3 images but 2 references"):
        load("ssim").score(photos, references=photos[:2])


def test_ssim_rejects_images_smaller_than_its_window():
    tiny = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        load("ssim").score(tiny, references=tiny)


@pytest.fixture(scope="module")
def random_backbone_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a seeded random AlexNet under torchvision's file name."""
    home = tmp_path_factory.mktemp("torch-home")
    save_random_alexnet(home)
    return home


@pytest.mark.filterwarnings("ignore:.*deprecated since 0.13:UserWarning")
def test_lpips_loads_the_backbone_exactly_as_the_lpips_package_does(photos, random_backbone_home, monkeypatch):
    import lpips

    monkeypatch.setenv("TORCH_HOME", str(random_backbone_home))
    ours = LPIPS(device="cpu")  # reads <TORCH_HOME>/hub/checkpoints/alexnet-owt-7be5be79.pth itself
    upstream = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()  # torchvision finds the same file
    distorted = [jpeg(photo, 20) for photo in photos]
    expected = []
    for a, b in zip(distorted, photos, strict=True):
        to_tensor = lambda x: torch.from_numpy(x.copy()).permute(2, 0, 1)[None].float() / 255  # noqa: E731
        with torch.no_grad():
            expected.append(upstream(to_tensor(a), to_tensor(b), normalize=True).item())
    np.testing.assert_allclose(ours.score(distorted, references=photos), expected, rtol=1e-5, atol=1e-7)
    assert ours.score(photos, references=photos).tolist() == [0.0] * 3


def test_lpips_refuses_a_file_that_is_not_alexnet(tmp_path):
    from quantkit.errors import CheckpointError

    wrong = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(CheckpointError, match=r"features\.0\.weight"):
        LPIPS(backbone=wrong, device="cpu")


@pytest.mark.needs_weights
def test_lpips_with_the_imagenet_backbone_ranks_damage(photos):
    ok, reason = availability("lpips")
    if not ok:
        pytest.skip(reason)
    metric = load("lpips")
    mild = metric.score([jpeg(photo, 90) for photo in photos], references=photos)
    heavy = metric.score([jpeg(photo, 10) for photo in photos], references=photos)
    assert (mild < heavy).all() and (mild < 0.1).all() and (heavy > 0.1).all()
