"""HPSv2, CLIP score and PickScore load real-format checkpoints through their real loading code and score as their
references define. The checkpoints here are tiny and random (quantkit.metrics.tiny): they check the code path and
the formula against the saved network, never a number worth reporting."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from quantkit.errors import CheckpointError
from quantkit.metrics import load
from quantkit.metrics.images import as_images, to_pil
from quantkit.metrics.quality import OPENAI_MEAN, OPENAI_STD, ClipScore, HPSv2, PickScore, hpsv2_preprocess
from quantkit.metrics.tiny import save_tiny_open_clip, save_tiny_pickscore

PROMPTS = ["a red square", "a cat wearing a hat", "GRAND OPENING sign", "x"]


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-open-clip")
    arch, model = save_tiny_open_clip(folder)
    return folder, arch, model


@pytest.fixture(scope="module")
def tiny_pickscore(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-pickscore")
    return folder, save_tiny_pickscore(folder)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(48, 48, 3), (40, 64, 3), (64, 40, 3), (32, 32, 3)]
    ]


def tokens(prompts):
    import open_clip

    return open_clip.get_tokenizer("ViT-H-14")(prompts)


def test_hpsv2_is_the_cosine_of_the_saved_networks_embeddings(tiny_open_clip, images, monkeypatch):
    folder, arch, model = tiny_open_clip
    monkeypatch.setenv("QUANTKIT_HPSV2_CKPT", str(folder))
    metric = HPSv2(arch=arch, device="cpu")
    pixels = torch.stack([hpsv2_preprocess(image, 32) for image in as_images(images)])
    with torch.no_grad():
        output = model(pixels, tokens(PROMPTS))  # hpsv2.score: diag(image_features @ text_features.T)
    image_features, text_features = output[0], output[1]
    expected = torch.diagonal(image_features @ text_features.T).numpy()
    np.testing.assert_allclose(metric.score(images, prompts=PROMPTS), expected, rtol=1e-5, atol=1e-6)
    assert metric.info["weights"].endswith("HPS_v2.1_compressed.pt") and metric.info["precision"] == "fp32"


def test_hpsv2_versions_load_their_own_files(tiny_open_clip):
    folder, arch, _ = tiny_open_clip
    v20 = HPSv2(version="v2.0", checkpoint=folder / "HPS_v2_compressed.pt", arch=arch, device="cpu")
    assert v20.info["model"].endswith("HPS v2.0")
    with pytest.raises(ValueError, match="version"):
        HPSv2(version="v3", checkpoint=folder, arch=arch)


def test_hpsv2_letterboxes_instead_of_cropping():
    wide = torch.zeros(3, 50, 100)
    wide[:, :, :2] = 1.0  # a white stripe at the far left edge survives only without a centre crop
    out = hpsv2_preprocess(wide, 32)
    black = TF.normalize(torch.zeros(3, 1, 1), OPENAI_MEAN, OPENAI_STD)
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out[:, :8, :], black.expand(3, 8, 32))  # 16 rows of content centred, 8 black above
    assert torch.allclose(out[:, 24:, :], black.expand(3, 8, 32))
    assert (out[:, 8:24, 0] > black[:, 0]).all()


def test_hpsv2_square_preprocessing_is_a_bicubic_antialiased_tensor_resize():
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = TF.resize(image, [32, 32], interpolation=InterpolationMode.BICUBIC, antialias=True)
    assert torch.allclose(hpsv2_preprocess(image, 32), TF.normalize(expected, OPENAI_MEAN, OPENAI_STD))


def test_clip_score_is_100_cosine_clipped_at_zero_per_image(tiny_open_clip, images, tmp_path):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    folder, arch, model = tiny_open_clip
    metric = ClipScore(model=arch, pretrained=None, device="cpu")  # weights found inside the local-dir folder
    assert metric.info["weights"] == str(folder / "open_clip_pytorch_model.bin")
    transform = image_transform_v2(PreprocessCfg(size=32), is_train=False)
    pixels = torch.stack([transform(to_pil(image)) for image in as_images(images)])
    with torch.no_grad():
        image_features = model.encode_image(pixels, normalize=True)
        text_features = model.encode_text(tokens(PROMPTS), normalize=True)
    raw = 100 * (image_features * text_features).sum(-1).numpy()
    assert (raw > 0).all()
    np.testing.assert_allclose(metric.score(images, prompts=PROMPTS), raw, rtol=1e-5, atol=1e-4)

    flipped = model.state_dict()
    flipped["text_projection"] = -flipped["text_projection"]  # every cosine changes sign
    torch.save(flipped, tmp_path / "flipped.bin")
    negative = ClipScore(model=arch, pretrained=None, checkpoint=tmp_path / "flipped.bin", device="cpu")
    assert np.array_equal(negative.score(images, prompts=PROMPTS), np.zeros(len(images)))


def test_pickscore_is_logit_scale_times_cosine_as_in_its_readme(tiny_pickscore, images, monkeypatch):
    folder, model = tiny_pickscore
    monkeypatch.setenv("QUANTKIT_PICKSCORE_DIR", str(folder))
    metric = PickScore(device="cpu")
    processor = metric.processor
    pil_images = [to_pil(image) for image in as_images(images)]
    image_inputs = processor(images=pil_images, padding=True, truncation=True, max_length=77, return_tensors="pt")
    text_inputs = processor(text=PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        image_embs = model.get_image_features(**image_inputs).pooler_output
        text_embs = model.get_text_features(**text_inputs).pooler_output
    image_embs = image_embs / image_embs.norm(dim=-1, keepdim=True)
    text_embs = text_embs / text_embs.norm(dim=-1, keepdim=True)
    expected = (model.logit_scale.exp() * (image_embs * text_embs).sum(-1)).detach().numpy()
    np.testing.assert_allclose(metric.score(images, prompts=PROMPTS), expected, rtol=1e-5, atol=1e-5)


def test_scores_are_deterministic_and_independent_of_batching(tiny_open_clip, images):
    folder, arch, _ = tiny_open_clip
    whole = load("hpsv2", checkpoint=str(folder), arch=arch, device="cpu")
    one_by_one = load("hpsv2", checkpoint=str(folder), arch=arch, device="cpu", batch_size=1)
    first = whole.score(images, prompts=PROMPTS)
    assert np.array_equal(first, whole.score(images, prompts=PROMPTS))
    np.testing.assert_allclose(one_by_one.score(images, prompts=PROMPTS), first, rtol=1e-5, atol=1e-6)


def test_prompts_are_required(tiny_open_clip, images):
    folder, arch, _ = tiny_open_clip
    metric = load("hpsv2", checkpoint=str(folder), arch=arch, device="cpu")
    with pytest.raises(ValueError, match="needs prompts="):
        metric.score(images)
    with pytest.raises(ValueError, match="4 images but 1 prompts"):
        metric.score(images, prompts=PROMPTS[:1])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_model"])
def test_a_damaged_checkpoint_is_a_checkpoint_error(tiny_open_clip, tmp_path, damage):
    folder, arch, _ = tiny_open_clip
    data = (folder / "HPS_v2.1_compressed.pt").read_bytes()
    bad = tmp_path / "HPS_v2.1_compressed.pt"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"not a checkpoint" * 100)
    else:
        torch.save({"state_dict": {"visual.proj": torch.zeros(2, 2)}}, bad)
    with pytest.raises(CheckpointError, match=str(bad)):
        HPSv2(checkpoint=bad, arch=arch, device="cpu")


def test_fp16_is_refused_on_cpu(tiny_open_clip):
    folder, arch, _ = tiny_open_clip
    with pytest.raises(ValueError, match="fp16"):
        HPSv2(checkpoint=folder, arch=arch, device="cpu", precision="fp16")
