"""Where learned metrics find their weights: an explicit option, then an environment variable, then a local cache.

Nothing here touches the network. Lookup order for each metric (first hit wins):

========== ======================= ========================================= ==========================================
metric     option                  environment variable                      cache (read offline)
========== ======================= ========================================= ==========================================
hpsv2      ``checkpoint=``         ``QUANTKIT_HPSV2_CKPT`` (file, or folder  HF cache ``xswu/HPSv2``
                                   holding the upstream file names)          ``HPS_v2_compressed.pt`` /
                                                                             ``HPS_v2.1_compressed.pt``
clip       ``checkpoint=``         ``QUANTKIT_CLIP_CKPT`` (file)             a weights file inside a ``local-dir:``
                                                                             model folder; else the HF cache repo
                                                                             open_clip names for ``pretrained=``
                                                                             (openai -> timm/vit_large_patch14_clip_
                                                                             224.openai)
pickscore  ``model_dir=``,         ``QUANTKIT_PICKSCORE_DIR``,               HF cache ``yuvalkirstain/PickScore_v1``;
           ``processor_dir=``      ``QUANTKIT_PICKSCORE_PROCESSOR_DIR``      processor: the model folder if it holds
                                                                             one, else HF cache
                                                                             ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``
lpips      ``backbone=``           ``TORCH_HOME`` (torch hub dir)            ``<torch hub>/checkpoints/``
                                                                             ``alexnet-owt-7be5be79.pth``
========== ======================= ========================================= ==========================================

The Hugging Face cache is the one ``HF_HUB_CACHE`` / ``HF_HOME`` point at (read when a metric loads, not at import).
When nothing is found, :class:`~quantkit.errors.MissingWeightsError` says what was looked for, where, which
variable to set, and the command that fetches it on a machine with hub access.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from huggingface_hub import constants, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError

from quantkit.errors import MissingWeightsError

HPSV2_REPO = "xswu/HPSv2"
HPSV2_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
PICKSCORE_REPO = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_HF_MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HF_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring ``HF_HUB_CACHE`` / ``HF_HOME`` as set now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(constants.HF_HUB_CACHE)


def hf_cached_file(repo_id: str, filename: str) -> Path | None:
    found = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
    return Path(found) if isinstance(found, str) else None


def hf_cached_snapshot(repo_id: str) -> Path | None:
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=hf_cache_dir()))
    except LocalEntryNotFoundError:
        return None


def hpsv2_checkpoint(version: str, checkpoint: str | os.PathLike | None = None) -> Path:
    """The HPS checkpoint for ``version`` ("v2.0" or "v2.1")."""
    if version not in HPSV2_FILES:
        raise ValueError(f"hpsv2 version must be one of {sorted(HPSV2_FILES)}, got {version!r}")
    filename = HPSV2_FILES[version]
    explicit = _explicit(checkpoint, "QUANTKIT_HPSV2_CKPT")
    if explicit is not None:
        if explicit.is_dir():
            explicit = explicit / filename
        elif explicit.name in HPSV2_FILES.values() and explicit.name != filename:
            raise MissingWeightsError(
                f"hpsv2 {version} needs {filename}, but {explicit} is the other version's checkpoint "
                "(scores of v2.0 and v2.1 are not comparable); point QUANTKIT_HPSV2_CKPT at a folder holding both"
            )
        return _existing(explicit, f"HPSv2 {version} checkpoint", "checkpoint= / QUANTKIT_HPSV2_CKPT")
    cached = hf_cached_file(HPSV2_REPO, filename)
    if cached is not None:
        return cached
    raise MissingWeightsError(
        f"HPSv2 {version} checkpoint {filename} not found: QUANTKIT_HPSV2_CKPT is unset and the Hugging Face cache "
        f"({hf_cache_dir()}) has no {HPSV2_REPO}/{filename}. Set QUANTKIT_HPSV2_CKPT to the file (or a folder "
        f"holding it) or pass checkpoint=...; fetch it on a machine with hub access: "
        f"`hf download {HPSV2_REPO} {filename}`"
    )


def clip_checkpoint(model: str, pretrained: str | None, checkpoint: str | os.PathLike | None = None) -> Path:
    """The open_clip weights for ``model`` (a built-in name or ``local-dir:<folder>``) and tag ``pretrained``."""
    import open_clip

    explicit = _explicit(checkpoint, "QUANTKIT_CLIP_CKPT")
    if explicit is not None:
        return _existing(explicit, f"CLIP weights for {model}", "checkpoint= / QUANTKIT_CLIP_CKPT")
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:"))
        for name in (*OPEN_CLIP_WEIGHT_FILES, "model.safetensors", "pytorch_model.bin"):
            if (folder / name).is_file():
                return folder / name
    tag_cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    repo_id = tag_cfg.get("hf_hub", "").strip("/")
    if repo_id:
        for name in OPEN_CLIP_WEIGHT_FILES:
            cached = hf_cached_file(repo_id, name)
            if cached is not None:
                return cached
    where = f"the Hugging Face cache ({hf_cache_dir()}) has no {repo_id}" if repo_id else "no hub repo is known"
    fetch = f"`hf download {repo_id} {OPEN_CLIP_WEIGHT_FILES[1]}`" if repo_id else "export it from open_clip"
    raise MissingWeightsError(
        f"CLIP weights for model={model!r} pretrained={pretrained!r} not found: QUANTKIT_CLIP_CKPT is unset and "
        f"{where}. Set QUANTKIT_CLIP_CKPT to an open_clip checkpoint file or pass checkpoint=...; fetch it on a "
        f"machine with hub access: {fetch}"
    )


def pickscore_dirs(
    model_dir: str | os.PathLike | None = None, processor_dir: str | os.PathLike | None = None
) -> tuple[Path, Path]:
    """(model folder, processor folder) for PickScore, both loadable with ``from_pretrained(local_files_only)``."""
    explicit_model = _explicit(model_dir, "QUANTKIT_PICKSCORE_DIR")
    model = explicit_model if explicit_model is not None else hf_cached_snapshot(PICKSCORE_REPO)
    if model is None or not _has(model, ("config.json",)) or not _has(model, _HF_MODEL_WEIGHTS):
        looked = f"{model}" if model is not None else f"the Hugging Face cache ({hf_cache_dir()})"
        raise MissingWeightsError(
            f"PickScore model {PICKSCORE_REPO} not found (looked in {looked} for config.json and model weights). "
            "Set QUANTKIT_PICKSCORE_DIR to a folder saved with save_pretrained / downloaded from the hub, or pass "
            f"model_dir=...; fetch it on a machine with hub access: `hf download {PICKSCORE_REPO}`"
        )
    explicit_processor = _explicit(processor_dir, "QUANTKIT_PICKSCORE_PROCESSOR_DIR")
    if explicit_processor is not None:
        processor = explicit_processor
    elif _has(model, _HF_PROCESSOR_FILES):
        processor = model
    else:
        processor = hf_cached_snapshot(PICKSCORE_PROCESSOR_REPO)
    if processor is None or not _has(processor, _HF_PROCESSOR_FILES):
        looked = f"{processor}" if processor is not None else f"the Hugging Face cache ({hf_cache_dir()})"
        raise MissingWeightsError(
            f"PickScore processor ({PICKSCORE_PROCESSOR_REPO}) not found (looked in {looked} for "
            "preprocessor_config.json). Set QUANTKIT_PICKSCORE_PROCESSOR_DIR or pass processor_dir=...; fetch it "
            f"on a machine with hub access: `hf download {PICKSCORE_PROCESSOR_REPO} --exclude '*.bin' "
            "'*.safetensors'`"
        )
    return model, processor


def lpips_backbone(backbone: str | os.PathLike | None = None) -> Path:
    """The torchvision AlexNet ImageNet weights that LPIPS uses as its feature network."""
    if backbone is not None:
        return _existing(Path(backbone), "LPIPS AlexNet backbone", "backbone=")
    path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if path.is_file():
        return path
    raise MissingWeightsError(
        f"LPIPS AlexNet backbone {ALEXNET_FILE} not found at {path}. Put the file there (TORCH_HOME selects the "
        f"torch hub folder) or pass backbone=...; fetch it on a machine with internet: "
        f"`python -c \"import torchvision; torchvision.models.alexnet(weights='IMAGENET1K_V1')\"` "
        f"(or download {ALEXNET_URL})"
    )


def _explicit(option: str | os.PathLike | None, env: str) -> Path | None:
    if option is not None:
        return Path(option)
    value = os.environ.get(env)
    return Path(value) if value else None


def _existing(path: Path, what: str, set_by: str) -> Path:
    if not path.is_file():
        raise MissingWeightsError(f"{what}: {path} (from {set_by}) does not exist or is not a file")
    return path


def _has(folder: Path, names: tuple[str, ...]) -> bool:
    return any((folder / name).is_file() for name in names)
