"""Prompt-conditioned quality: HPSv2 (v2.0 / v2.1), CLIP score and PickScore, each per image.

All three need real weights (see :mod:`quantkit.metrics.weights`); nothing is downloaded. On CUDA they run under
fp16 autocast by default (as HPSv2 upstream does) and take the final cosine in fp32; on CPU everything is fp32.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from quantkit.errors import CheckpointError
from quantkit.metrics import weights
from quantkit.metrics.images import to_pil
from quantkit.metrics.registry import Metric, resolve_device, resolve_precision

# OpenAI CLIP normalisation, which HPSv2 uses (its image_mean/std are None -> OPENAI_DATASET_MEAN/STD).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class HPSv2(Metric):
    """Human Preference Score v2 as ``hpsv2.score`` defines it: the cosine of open_clip ViT-H-14 image and prompt
    embeddings with the HPS checkpoint's weights (typically 0.2-0.35; the HPSv2 benchmark tables report mean x 100).

    Preprocessing is HPSv2's own (``light_augmentation`` eval transform), not CLIP's centre crop: the [0, 1] image
    tensor is resized bicubically so its long side is 224 (torchvision tensor resize, ``antialias=True`` as on
    torchvision >= 0.17, which current ``hpsv2`` installs use), padded with black to 224 x 224, centred, then
    normalised with OpenAI's mean/std. v2.0 and v2.1 scores are not comparable with each other.
    """

    name = "hpsv2"

    def __init__(
        self,
        *,
        version: str = "v2.1",
        checkpoint: str | os.PathLike | None = None,
        arch: str = "ViT-H-14",
        device: str | None = None,
        precision: str | None = None,
        batch_size: int = 16,
    ) -> None:
        super().__init__(batch_size=batch_size)
        path = weights.hpsv2_checkpoint(version, checkpoint)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model, self.tokenizer = _load_open_clip(arch, path, self.device)
        size = self.model.visual.image_size
        self.image_size = size if isinstance(size, int) else size[0]
        self.info = {"model": f"open_clip {arch} + HPS {version}", "weights": str(path), "precision": self.precision}

    @classmethod
    def check(cls, *, version: str = "v2.1", checkpoint: str | os.PathLike | None = None, **_: object) -> None:
        weights.hpsv2_checkpoint(version, checkpoint)

    def _score_chunk(self, images, *, prompts, references, texts) -> np.ndarray:
        pixels = torch.stack([hpsv2_preprocess(image, self.image_size) for image in images]).to(self.device)
        tokens = self.tokenizer(prompts).to(self.device)
        with torch.inference_mode(), _autocast(self.device, self.precision):
            image_features = self.model.encode_image(pixels, normalize=True)
            text_features = self.model.encode_text(tokens, normalize=True)
        return (image_features.float() * text_features.float()).sum(-1).cpu().numpy()


def hpsv2_preprocess(image: torch.Tensor, size: int) -> torch.Tensor:
    """HPSv2's ``ResizeMaxSize`` + ``MaskAwareNormalize`` on one canonical image (letterbox, no crop).

    Upstream skips the resize and the pad when the long side already equals ``size``; padding anyway only changes
    non-square images that upstream cannot batch at all.
    """
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    new_height, new_width = round(height * scale), round(width * scale)
    if (new_height, new_width) != (height, width):
        image = TF.resize(image, [new_height, new_width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    pad_h, pad_w = size - new_height, size - new_width
    image = TF.pad(image, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0.0)
    return TF.normalize(image, OPENAI_MEAN, OPENAI_STD)


class ClipScore(Metric):
    """CLIP score ``max(100 * cos(E_image, E_prompt), 0)``, clipped per image (torchmetrics clips only the mean).

    Default model: open_clip ``ViT-L-14-quickgelu`` with the ``openai`` weights, the same network as Hugging Face's
    ``openai/clip-vit-large-patch14`` that torchmetrics' ``CLIPScore`` and SVDQuant report with. Images go through
    the model's own open_clip eval transform on the uint8 image (bicubic resize of the short side to 224, centre crop,
    OpenAI mean/std); the raw prompt (no "A photo depicts" prefix) is tokenised by open_clip, truncated to 77 tokens.
    Weight 100, not Hessel et al.'s 2.5: record the model and scale with every result.
    """

    name = "clip"

    def __init__(
        self,
        *,
        model: str = "ViT-L-14-quickgelu",
        pretrained: str | None = "openai",
        checkpoint: str | os.PathLike | None = None,
        device: str | None = None,
        precision: str | None = None,
        batch_size: int = 16,
    ) -> None:
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        super().__init__(batch_size=batch_size)
        path = weights.clip_checkpoint(model, pretrained, checkpoint)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        tag = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
        self.model, self.tokenizer = _load_open_clip(model, path, self.device, tag=tag)
        preprocess = open_clip.get_model_preprocess_cfg(self.model)
        self.transform = image_transform_v2(PreprocessCfg(**preprocess), is_train=False)
        self.info = {"model": f"open_clip {model} ({pretrained})", "weights": str(path), "precision": self.precision}

    @classmethod
    def check(
        cls,
        *,
        model: str = "ViT-L-14-quickgelu",
        pretrained: str | None = "openai",
        checkpoint: str | os.PathLike | None = None,
        **_: object,
    ) -> None:
        weights.clip_checkpoint(model, pretrained, checkpoint)

    def _score_chunk(self, images, *, prompts, references, texts) -> np.ndarray:
        pixels = torch.stack([self.transform(to_pil(image)) for image in images]).to(self.device)
        tokens = self.tokenizer(prompts).to(self.device)
        with torch.inference_mode(), _autocast(self.device, self.precision):
            image_features = self.model.encode_image(pixels, normalize=True)
            text_features = self.model.encode_text(tokens, normalize=True)
        cosine = (image_features.float() * text_features.float()).sum(-1)
        return (100.0 * cosine).clamp(min=0.0).cpu().numpy()


class PickScore(Metric):
    """PickScore as its README computes it: ``exp(logit_scale) * cos`` of transformers ``CLIPModel`` embeddings
    (PickScore_v1 weights), images and prompts prepared by the LAION CLIP-ViT-H-14 processor (short side to 224,
    centre crop; prompts padded / truncated to 77 tokens). Only differences between variants on the same prompt
    are meaningful.
    """

    name = "pickscore"

    def __init__(
        self,
        *,
        model_dir: str | os.PathLike | None = None,
        processor_dir: str | os.PathLike | None = None,
        device: str | None = None,
        precision: str | None = None,
        batch_size: int = 16,
    ) -> None:
        from transformers import AutoProcessor, CLIPModel

        super().__init__(batch_size=batch_size)
        model_path, processor_path = weights.pickscore_dirs(model_dir, processor_dir)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.processor = AutoProcessor.from_pretrained(processor_path, local_files_only=True)
        self.model = CLIPModel.from_pretrained(model_path, local_files_only=True).eval().to(self.device)
        self.info = {
            "model": "transformers CLIPModel (PickScore_v1)",
            "weights": str(model_path),
            "processor": str(processor_path),
            "precision": self.precision,
        }

    @classmethod
    def check(
        cls,
        *,
        model_dir: str | os.PathLike | None = None,
        processor_dir: str | os.PathLike | None = None,
        **_: object,
    ) -> None:
        weights.pickscore_dirs(model_dir, processor_dir)

    def _score_chunk(self, images, *, prompts, references, texts) -> np.ndarray:
        image_inputs = self.processor(images=[to_pil(image) for image in images], return_tensors="pt")
        text_inputs = self.processor(text=prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.inference_mode(), _autocast(self.device, self.precision):
            output = self.model(
                input_ids=text_inputs["input_ids"].to(self.device),
                attention_mask=text_inputs["attention_mask"].to(self.device),
                pixel_values=image_inputs["pixel_values"].to(self.device),
            )
            scale = self.model.logit_scale.exp().float()
        image_embeds = torch.nn.functional.normalize(output.image_embeds.float(), dim=-1)
        text_embeds = torch.nn.functional.normalize(output.text_embeds.float(), dim=-1)
        return (scale * (image_embeds * text_embeds).sum(-1)).cpu().numpy()


def _load_open_clip(arch: str, checkpoint: Path, device: torch.device, *, tag: dict | None = None):
    """An open_clip model built from ``arch`` (built-in name or ``local-dir:``) with ``checkpoint``'s weights.

    The architecture comes from open_clip's config, never from a download; ``tag`` (open_clip's pretrained config)
    supplies QuickGELU and preprocessing settings that belong to the weights rather than to the architecture.
    """
    import open_clip

    tag = tag or {}
    preprocess = {key: tag[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in tag}
    logging.disable(logging.WARNING)  # open_clip warns "initialized randomly" before we load the checkpoint
    try:
        model = open_clip.create_model(
            arch,
            pretrained=None,
            load_weights=False,
            force_quick_gelu=bool(tag.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess,
        )
    finally:
        logging.disable(logging.NOTSET)
    try:
        open_clip.load_checkpoint(model, str(checkpoint), strict=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, KeyError) as error:
        raise CheckpointError(
            f"{checkpoint}: cannot load into open_clip {arch}: {error}. Is it the right file for this model, "
            "complete (compare its size with the hub's), and a plain state dict?"
        ) from error
    return model.eval().to(device), open_clip.get_tokenizer(arch)


def _autocast(device: torch.device, precision: str):
    if precision == "fp16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()
