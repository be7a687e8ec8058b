"""Ideogram 4's own prompt enhancer: diffusers' ``Ideogram4Pipeline.upsample_prompt``.

The pipeline grafts ``Ideogram4PromptEnhancerHead`` (an LM head) onto its head-less Qwen3-VL text encoder and
writes captions with diffusers' system message; with ``outlines`` installed the decoding is constrained to
diffusers' caption schema (high_level_description + background + obj/text elements, no style or bboxes), which
is a subset of ours, so its output still goes through our validator and repair/retry loop.

``upsample_prompt`` takes only a prompt string, so strings to render are quoted in it: diffusers' system message
turns every quoted phrase into a verbatim text element.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from quantkit.errors import MissingWeightsError
from quantkit.prompts.expanders.base import Attempt, Expander, ExpansionRequest


def enhancer_prompt(request: ExpansionRequest) -> str:
    """The raw prompt, plus any requested string it does not already quote."""
    missing = [text for text in request.texts if f'"{text}"' not in request.raw]
    if not missing:
        return request.raw
    return request.raw.rstrip(". ") + ", with the text " + " and ".join(f'"{text}"' for text in missing)


class Ideogram4Expander(Expander):
    """Captions from a loaded ``Ideogram4Pipeline`` that carries its ``prompt_enhancer_head``."""

    def __init__(
        self,
        pipe: Any,
        *,
        height: int = 1024,
        width: int = 1024,
        temperature: float = 1.0,
        max_new_tokens: int = 1024,
        name: str | None = None,
    ) -> None:
        if getattr(pipe, "prompt_enhancer_head", None) is None:
            raise MissingWeightsError(
                "the Ideogram4Pipeline has no prompt_enhancer_head; load Ideogram4PromptEnhancerHead from its local "
                "directory and pass it as Ideogram4Pipeline.from_pretrained(path, prompt_enhancer_head=head)"
            )
        self.pipe = pipe
        self.height, self.width = height, width
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        name = name or Path(str(getattr(pipe.text_encoder.config, "_name_or_path", "") or "ideogram4")).name
        self.id = f"ideogram4:{name}:{width}x{height}:t{temperature:g}"

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        head_path: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.bfloat16,
        **kwargs: Any,
    ) -> Ideogram4Expander:
        """Load the pipeline from a local diffusers directory; the head comes from ``head_path`` or the
        pipeline's own ``prompt_enhancer_head`` folder."""
        from diffusers import Ideogram4Pipeline, Ideogram4PromptEnhancerHead

        path = Path(path)
        head_dir = Path(head_path) if head_path is not None else path / "prompt_enhancer_head"
        for needed in (path / "model_index.json", head_dir / "config.json"):
            if not needed.is_file():
                raise MissingWeightsError(
                    f"{needed} not found: the ideogram4 expander needs a local Ideogram4Pipeline directory and its "
                    "prompt_enhancer_head (an Ideogram4PromptEnhancerHead such as "
                    "diffusers/qwen3-vl-8b-instruct-lm-head)"
                    " on disk; pass head_path= if the head lives outside the pipeline directory"
                )
        head = Ideogram4PromptEnhancerHead.from_pretrained(head_dir, local_files_only=True, dtype=dtype)
        pipe = Ideogram4Pipeline.from_pretrained(
            path, prompt_enhancer_head=head, local_files_only=True, dtype=dtype
        ).to(device)
        return cls(pipe, name=kwargs.pop("name", path.name), **kwargs)

    def propose(self, request: ExpansionRequest, attempt: int, previous: Attempt | None) -> str:
        device = self.pipe.text_encoder.device
        generator = torch.Generator(device="cpu").manual_seed(request.seed * 1009 + attempt)
        (caption,) = self.pipe.upsample_prompt(
            enhancer_prompt(request),
            height=self.height,
            width=self.width,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            generator=generator,
            device=device,
        )
        return caption
