"""The embedded tiny Ideogram 4: diffusers' real classes with tiny configs, made from a fixed seed.

Row lengths of the transformer's big linears are multiples of 256 so every format (Q4_K included) quantizes them,
while ``input_proj`` (16), ``adaln_modulation`` (64) and ``llm_cond_proj`` (416) exercise the skip rules the way the
real model's odd-sized layers do.

The full pipeline (``build_tiny_pipeline``) adds a Qwen3-VL text encoder with the 36 decoder layers the pipeline taps
(hidden size 32, so 13 taps give the transformer's 416 text features), an ``AutoencoderKLFlux2`` with 4 latent
channels (x 2x2 patch = the transformer's 16 input channels) and seeded batch-norm statistics, and a byte-level BPE
tokenizer trained on caption-shaped text with a Qwen chat template. ``python -m quantkit.pipelines.tiny --out DIR``
saves it in bf16 (a few MB); the copy under ``golden/models/tiny-ideogram4`` (``--model tiny-random``) serves the
tests that need only the plumbing. The default model, ``tiny``, is its trained sibling (:mod:`quantkit.training`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Ideogram4Pipeline,
    Ideogram4Transformer2DModel,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3VLConfig, Qwen3VLModel

TINY_SEED = 0
TEXT_HIDDEN_SIZE = 32
TEXT_DECODER_LAYERS = 36  # the pipeline taps hidden states up to layer 35
TOKENIZER_VOCAB_SIZE = 1024
TINY_TRANSFORMER_CONFIG: dict[str, object] = {
    "in_channels": 16,
    "num_layers": 2,
    "attention_head_dim": 128,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "adaln_dim": 64,
    "llm_features_dim": 13 * TEXT_HIDDEN_SIZE,
    "rope_theta": 5_000_000,
    "mrope_section": (12, 10, 10),
    "norm_eps": 1e-5,
}
TINY_VAE_CONFIG: dict[str, object] = {
    "block_out_channels": (16, 16, 32, 32),  # four blocks: the real model's 8x spatial factor
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 128,
}
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen's template, reduced to text: the pipeline sends [{"role": "user", "content": [{"type": "text", ...}]}].
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Caption-shaped training text for the BPE merges: schema keys and common caption words become single tokens, so a
# benchmark caption stays a few hundred tokens long.
TOKENIZER_CORPUS = (
    '{"high_level_description":"A clean, modern business card layout for a tech company.","style_description":'
    '{"aesthetics":"minimal, professional, geometric","lighting":"even, diffuse studio lighting","photo":'
    '"35mm lens, shallow depth of field","medium":"photograph","art_style":"flat vector design, generous '
    'whitespace, sans-serif typography","color_palette":["#FFFFFF","#F0F0F0","#333333","#0066FF","#00CC88"]},'
    '"compositional_deconstruction":{"background":"A solid off-white card surface with subtle paper texture.",'
    '"elements":[{"type":"obj","bbox":[80,100,300,320],"desc":"A small blue geometric hexagon logo mark in the '
    'upper-left corner.","color_palette":["#0066FF"]},{"type":"text","bbox":[120,360,260,900],"text":"ACME TECH",'
    '"desc":"Bold dark grey sans-serif company name across the upper third of the card."}]}}',
    "A photo of a golden retriever sitting on a wooden porch at sunset, warm light, soft shadows, green grass, blue "
    "sky with white clouds, a red barn in the background. A vintage poster with large bold letters that read OPEN, "
    "a neon sign on a brick wall, a hand-painted storefront, a stained-glass window, a t-shirt print, a sweatshirt "
    "with a slogan, a menu board in a cafe, a book cover, a street sign, a label on a glass bottle, an illustration "
    "of a city at night, a watercolor painting of mountains and a lake, a 3d render of a toy robot, the text is "
    "centered, white on black, black on white, left aligned, in the top right, in the bottom left, close-up, wide "
    "shot, high contrast, pastel colors, dark moody tones, bright and cheerful, realistic, detailed, simple, elegant.",
)


def tiny_transformer(seed: int = 0, dtype: torch.dtype = torch.float32) -> Ideogram4Transformer2DModel:
    """A seeded tiny ``Ideogram4Transformer2DModel`` with the real module names (to_q, feed_forward.w2, ...)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Ideogram4Transformer2DModel(**TINY_TRANSFORMER_CONFIG).to(dtype).eval()


def tiny_tokenizer(
    corpus: Sequence[str] = TOKENIZER_CORPUS, vocab_size: int = TOKENIZER_VOCAB_SIZE, *, split_words: bool = True
) -> PreTrainedTokenizerFast:
    """A byte-level BPE (any Unicode caption encodes) trained on ``corpus``, with a Qwen chat template.
    ``split_words=False`` lets merges cross spaces, so whole caption phrases become single tokens."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=split_words)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_text_encoder(tokenizer: PreTrainedTokenizerFast, seed: int) -> Qwen3VLModel:
    """A head-less ``Qwen3VLModel`` (the class the pipeline's prompt enhancer grafts a head onto), 36 text layers."""
    token = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_HIDDEN_SIZE,
            "intermediate_size": 64,
            "num_hidden_layers": TEXT_DECODER_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 1,
            "out_hidden_size": TEXT_HIDDEN_SIZE,
            "patch_size": 4,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Qwen3VLModel(config).eval()


def tiny_vae(seed: int) -> AutoencoderKLFlux2:
    """A tiny FLUX.2 VAE whose batch-norm statistics are seeded, so the pipeline's ``vae.bn`` denormalisation is
    exercised with non-trivial values (fresh BatchNorm stats are 0 / 1)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLFlux2(**TINY_VAE_CONFIG).eval()
        channels = vae.bn.running_mean.numel()
        vae.bn.running_mean.copy_(0.1 * torch.randn(channels))
        vae.bn.running_var.copy_(0.5 + 1.5 * torch.rand(channels))
    return vae


def build_tiny_pipeline(seed: int = TINY_SEED) -> Ideogram4Pipeline:
    """The whole tiny pipeline in float32; the same seed always gives the same weights and tokenizer."""
    tokenizer = tiny_tokenizer()
    pipe = Ideogram4Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(seed + 3),
        text_encoder=tiny_text_encoder(tokenizer, seed + 2),
        tokenizer=tokenizer,
        transformer=tiny_transformer(seed),
        unconditional_transformer=tiny_transformer(seed + 1),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(out: Path, seed: int = TINY_SEED, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Save the tiny pipeline with its weights in ``dtype`` (bf16 keeps the folder a few MB)."""
    pipe = build_tiny_pipeline(seed)
    pipe.to(dtype)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the embedded tiny Ideogram 4 pipeline (bf16 weights).")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (diffusers layout)")
    parser.add_argument("--seed", type=int, default=TINY_SEED)
    args = parser.parse_args(argv)
    out = save_tiny_pipeline(args.out, args.seed)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
