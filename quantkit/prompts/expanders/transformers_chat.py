# ruff: noqa: E501  (the system prompt is prose the model reads line by line)
"""Any local chat model as a caption writer, steered by a system prompt written to Ideogram 4's caption schema.

The model is loaded from a local directory only (no hub). On a retry the previous output and its findings are
fed back as a correction turn, which is what lets an instruction-tuned model repair its own JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from quantkit.errors import MissingWeightsError
from quantkit.prompts.caption import ELEMENT_PALETTE_MAX, STYLE_PALETTE_MAX, Finding
from quantkit.prompts.expanders.base import Attempt, Expander, ExpansionRequest

SYSTEM_PROMPT_VERSION = "sys-v1"
SYSTEM_PROMPT = f"""You turn a short image idea into ONE JSON caption for the Ideogram 4 image model. Reply with the JSON object only, on one line: no markdown, no commentary.

Keys, in exactly this order (optional keys may be left out, but never reordered):
{{"high_level_description": str, "style_description": {{...}}, "compositional_deconstruction": {{"background": str, "elements": [...]}}}}

style_description (optional) holds exactly one of "photo" or "art_style":
- photograph: {{"aesthetics": str, "lighting": str, "photo": str (lens, angle, film), "medium": "photograph", "color_palette": [...]}}
- anything else: {{"aesthetics": str, "lighting": str, "medium": str (illustration, painting, 3d_render, graphic_design), "art_style": str, "color_palette": [...]}}
compositional_deconstruction: "background" (the backdrop or scene shell) then "elements" (at least one).
Each element is one of:
- {{"type": "obj", "bbox": [y_min, x_min, y_max, x_max], "desc": str, "color_palette": [...]}}
- {{"type": "text", "bbox": [y_min, x_min, y_max, x_max], "text": str (the literal words to render), "desc": str (lettering, colour, placement), "color_palette": [...]}}
"bbox" and "color_palette" are optional. A bbox is four integers from 0 to 1000, origin top-left, with y_min <= y_max and x_min <= x_max. Colours are uppercase "#RRGGBB" strings: at most {STYLE_PALETTE_MAX} in style_description, at most {ELEMENT_PALETTE_MAX} per element.
No other keys. No empty strings. The main subject is the first "obj" element. Every string the user asks to render becomes its own "text" element with that exact text, and no other text elements are added.

Example:
{{"high_level_description":"A minimalist jazz festival poster in flat graphic design.","style_description":{{"aesthetics":"minimal, bold","lighting":"even, flat","medium":"graphic_design","art_style":"flat vector shapes","color_palette":["#0B4F5C","#E3A72F","#F4EBD9"]}},"compositional_deconstruction":{{"background":"A solid deep teal field.","elements":[{{"type":"obj","bbox":[150,200,650,800],"desc":"A flat mustard-yellow saxophone built from simple shapes.","color_palette":["#E3A72F"]}},{{"type":"text","bbox":[700,100,850,900],"text":"JAZZ NIGHT","desc":"Large cream condensed sans-serif headline."}}]}}}}"""


def user_message(request: ExpansionRequest) -> str:
    """The user turn: the idea, its category, and the exact strings to render (or none)."""
    lines = [f"Image idea: {request.raw}"]
    if request.category:
        lines.append(f"Category: {request.category}")
    if request.texts:
        lines.append("Render exactly these strings, one text element each: " + json.dumps(list(request.texts)))
    else:
        lines.append("Render no text unless the idea itself names words to show.")
    return "\n".join(lines)


def correction_message(feedback: Sequence[Finding]) -> str:
    listing = "\n".join(f"- {f.path}: {f.message}" for f in feedback[:12])
    return f"That caption is not valid:\n{listing}\nReply with the corrected JSON object only."


class TransformersChatExpander(Expander):
    """Captions from a local ``transformers`` chat model (any model whose tokenizer has a chat template)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str | None = None,
        temperature: float = 0.7,
        max_new_tokens: int = 768,
        system_prompt: str = SYSTEM_PROMPT,
    ) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; a chat (instruction-tuned) model is needed")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        name = name or Path(str(getattr(model.config, "_name_or_path", "") or "model")).name
        version = SYSTEM_PROMPT_VERSION if system_prompt == SYSTEM_PROMPT else "sys-custom"
        self.id = f"transformers:{name}:{version}:t{temperature:g}"

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], *, device: str = "cpu", dtype: torch.dtype = torch.float32, **kwargs: Any
    ) -> TransformersChatExpander:
        """Load a chat model and its tokenizer from a local directory (never the hub)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise MissingWeightsError(
                f"no chat model at {path} (config.json missing); download one (e.g. Qwen3-4B-Instruct) to a local "
                "directory and pass that path"
            )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
        return cls(model, tokenizer, name=kwargs.pop("name", path.name), **kwargs)

    def propose(self, request: ExpansionRequest, attempt: int, previous: Attempt | None) -> str:
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": user_message(request)},
        ]
        if previous is not None:
            messages += [
                {"role": "assistant", "content": str(previous.output)},
                {"role": "user", "content": correction_message(previous.findings)},
            ]
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_tensors="pt", return_dict=True
        ).to(self.model.device)
        sample = self.temperature > 0
        with torch.random.fork_rng(devices=[self.model.device] if self.model.device.type == "cuda" else []):
            torch.manual_seed(request.seed * 1009 + attempt)
            generated = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=sample,
                **({"temperature": self.temperature} if sample else {}),
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        new_tokens = generated[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
