"""Learned metrics find weights by option, then environment variable, then the local caches; never the network.
When nothing is found the error names the file, the variable to set and the command that fetches it."""

from pathlib import Path

import pytest

from quantkit.errors import MissingWeightsError
from quantkit.metrics import availability, weights

ENV_VARS = (
    "QUANTKIT_HPSV2_CKPT",
    "QUANTKIT_CLIP_CKPT",
    "QUANTKIT_PICKSCORE_DIR",
    "QUANTKIT_PICKSCORE_PROCESSOR_DIR",
)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache and torch hub, and none of the metric variables set."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return cache


def put_in_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "0" * 40) -> Path:
    """Lay files out the way huggingface_hub caches a downloaded repo snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    return snapshot


def test_missing_hpsv2_names_file_variable_and_download_command(hf_cache):
    with pytest.raises(MissingWeightsError) as error:
        weights.hpsv2_checkpoint("v2.1")
    message = str(error.value)
    assert "HPS_v2.1_compressed.pt" in message
    assert "QUANTKIT_HPSV2_CKPT" in message
    assert "hf download xswu/HPSv2 HPS_v2.1_compressed.pt" in message


def test_hpsv2_found_in_the_hf_cache_offline(hf_cache):
    snapshot = put_in_hf_cache(hf_cache, "xswu/HPSv2", {"HPS_v2_compressed.pt": b"x"})
    assert weights.hpsv2_checkpoint("v2.0") == snapshot / "HPS_v2_compressed.pt"
    with pytest.raises(MissingWeightsError):
        weights.hpsv2_checkpoint("v2.1")


def test_hpsv2_option_beats_variable_beats_cache(hf_cache, tmp_path, monkeypatch):
    put_in_hf_cache(hf_cache, "xswu/HPSv2", {"HPS_v2.1_compressed.pt": b"x"})
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "HPS_v2.1_compressed.pt").write_bytes(b"y")
    monkeypatch.setenv("QUANTKIT_HPSV2_CKPT", str(folder))
    assert weights.hpsv2_checkpoint("v2.1") == folder / "HPS_v2.1_compressed.pt"
    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"z")
    assert weights.hpsv2_checkpoint("v2.1", checkpoint=explicit) == explicit


def test_hpsv2_refuses_the_other_versions_file(hf_cache, tmp_path):
    other = tmp_path / "HPS_v2_compressed.pt"
    other.write_bytes(b"x")
    with pytest.raises(MissingWeightsError, match="not comparable"):
        weights.hpsv2_checkpoint("v2.1", checkpoint=other)


def test_a_variable_pointing_nowhere_is_reported_as_such(hf_cache, monkeypatch):
    monkeypatch.setenv("QUANTKIT_CLIP_CKPT", "/nonexistent/clip.bin")
    with pytest.raises(MissingWeightsError, match=r"/nonexistent/clip.bin \(from checkpoint= / QUANTKIT_CLIP_CKPT\)"):
        weights.clip_checkpoint("ViT-L-14-quickgelu", "openai")


def test_default_clip_weights_come_from_open_clips_repo_for_the_openai_tag(hf_cache):
    with pytest.raises(MissingWeightsError, match=r"hf download timm/vit_large_patch14_clip_224\.openai"):
        weights.clip_checkpoint("ViT-L-14-quickgelu", "openai")
    snapshot = put_in_hf_cache(hf_cache, "timm/vit_large_patch14_clip_224.openai", {"open_clip_model.safetensors": b""})
    assert weights.clip_checkpoint("ViT-L-14-quickgelu", "openai") == snapshot / "open_clip_model.safetensors"


def test_clip_local_dir_model_brings_its_own_weights(hf_cache, tmp_path):
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"")
    assert weights.clip_checkpoint(f"local-dir:{tmp_path}", None) == tmp_path / "open_clip_pytorch_model.bin"


def test_pickscore_processor_defaults_to_the_laion_repo(hf_cache):
    put_in_hf_cache(hf_cache, "yuvalkirstain/PickScore_v1", {"config.json": b"{}", "model.safetensors": b""})
    with pytest.raises(MissingWeightsError, match="laion/CLIP-ViT-H-14-laion2B-s32B-b79K") as error:
        weights.pickscore_dirs()
    assert "QUANTKIT_PICKSCORE_PROCESSOR_DIR" in str(error.value)
    processor = put_in_hf_cache(hf_cache, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", {"preprocessor_config.json": b""})
    model, found = weights.pickscore_dirs()
    assert model.name == found.name == "0" * 40 and found == processor


def test_pickscore_folder_without_weights_is_missing(hf_cache, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("QUANTKIT_PICKSCORE_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="QUANTKIT_PICKSCORE_DIR"):
        weights.pickscore_dirs()


def test_lpips_backbone_is_read_from_the_torch_hub_folder(hf_cache, tmp_path):
    with pytest.raises(MissingWeightsError, match=r"alexnet-owt-7be5be79\.pth") as error:
        weights.lpips_backbone()
    assert "TORCH_HOME" in str(error.value)
    path = tmp_path / "torch-home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert weights.lpips_backbone() == path


@pytest.mark.parametrize(
    ("name", "variable"),
    [("hpsv2", "QUANTKIT_HPSV2_CKPT"), ("clip", "QUANTKIT_CLIP_CKPT"), ("pickscore", "QUANTKIT_PICKSCORE_DIR")],
)
def test_availability_explains_without_loading_anything(hf_cache, name, variable):
    ok, reason = availability(name)
    assert not ok and variable in reason and "hf download" in reason


def test_metrics_without_weights_are_available(hf_cache):
    assert availability("psnr") == (True, "")
    assert availability("ocr_exact") == (True, "")


def test_missing_optional_ocr_backend_is_reported(hf_cache, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "paddleocr" else real_find_spec(n))
    ok, reason = availability("ocr_exact", backend="paddleocr")
    assert not ok and "pip install paddleocr" in reason
