"""Train the embedded text-capable tiny Ideogram 4 on CPU: ``python -m quantkit.training.tiny_text --out DIR``.

The model is diffusers' real ``Ideogram4Pipeline`` with small configs: both ``Ideogram4Transformer2DModel`` copies,
an ``AutoencoderKLFlux2`` and the frozen random Qwen3-VL text encoder and tokenizer of
:mod:`quantkit.pipelines.tiny`. It is a test double that has **memorised the default study's captions**: a model
this small cannot learn to spell arbitrary words in the ~1 CPU-hour budget (a probe that trained on many words
learned layout and colour but no legible glyph), but it can learn to redraw the ~10 images its captions describe,
which is what makes text legibility measurable, and losable under quantization, on a CPU.

Phases (each resumes from ``DIR/checkpoint.pt``):

1. **VAE** as an autoencoder on rendered captions (:mod:`quantkit.training.render`): the study's captions plus
   template captions over a word list, random 64 px crops, L1 + MSE + a small KL term. Four-times downsampling
   (three blocks) with 8 latent channels, not the real model's 8x: at 128 px a glyph is ~12 px wide, and an 8x
   latent cell would have to hold most of a letter in a handful of channels. Its batch-norm statistics are then
   measured on the packed latents, as the pipeline's ``vae.bn`` denormalisation expects.
2. **Transformers** with the flow-matching objective the pipeline samples with (diffusers' Ideogram 4 convention):
   model time ``t`` in [0, 1] with 0 = noise and 1 = data, ``x_t = (1 - t) * noise + t * x0`` on the normalised
   packed latents, target velocity ``v = x0 - noise`` (the pipeline steps the scheduler with ``-v``). The
   conditional transformer sees the packed ``[text, image]`` sequence built by the pipeline's own ``encode_prompt``;
   the unconditional copy sees the image tokens with zeroed text features, as the pipeline feeds it, on the same
   images (the real model's separate CFG weights). The text encoder is frozen.

Every ``--eval-every`` seconds the script samples the study's prompts through the pipeline with FP8-quantized
transformers (the study's reference variant) and reads them with PP-OCR; it stops when the exact-match rate
reaches ``--target`` or the time budget is spent. ``DIR/log.csv`` records losses, ``DIR/ocr.csv`` legibility.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import platform
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Ideogram4Pipeline
from diffusers import Ideogram4Transformer2DModel as Transformer

from quantkit.pipelines import tiny
from quantkit.prompts.benchmark import load_benchmark
from quantkit.prompts.caption import canonical_json
from quantkit.prompts.expanders.base import ExpansionRequest
from quantkit.prompts.expanders.template import build_caption
from quantkit.training.render import render_caption

SCRIPT_VERSION = "tiny-text-v1"
RESOLUTION = (128, 128)
STUDY_PROMPTS = ("benchmark-v1", 10)  # the default study: 10 stratified prompts, one per category
TRANSFORMER_CONFIG: dict[str, Any] = {
    **tiny.TINY_TRANSFORMER_CONFIG,
    "in_channels": 32,  # 8 latent channels x 2x2 patch
    "num_layers": 3,
    "intermediate_size": 512,
}
VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": (16, 32, 64),  # three blocks: 4x spatial (see the module docstring)
    "mid_block_add_attention": False,  # trained on crops: a convolution-only VAE decodes any size the same way
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "layers_per_block": 1,
    "latent_channels": 8,
    "norm_num_groups": 8,
    "sample_size": 128,
}
# Short strings for the autoencoder's template captions (word and number shapes, not the study's strings only).
_WORD_LIST = (
    "OPEN SALE CAFE BAR TEA JAZZ ROCK FOLK SODA MILK BREAD SOUP FISH RICE CORN PLUM PEAR LIME FIG KIWI "
    "MANGO LEMON APPLE HONEY SALT GIN RUM WINE BEER TACO PHO SUSHI NOODLE BOOK SHOP MAP PARK ZOO GYM SPA "
    "INN HOTEL MOTEL EXIT STOP GO WEST EAST NORTH SOUTH ROAD LANE AVE PIER DOCK PORT BAY SEA SUN MOON "
    "STAR SKY RAIN SNOW WIND FIRE ICE GOLD IRON JADE RUBY ONYX ECHO NOVA ZEN JOY HOPE LOVE PEACE CALM "
    "WILD FREE BOLD KIND NEW OLD BIG TINY HOT COLD FAST SLOW LIVE LOUD SOFT DARK LIGHT ROAST BREW FRESH "
    "EGGS FARM BARN MILL CLUB TEAM CREW CITY TOWN HOME ROOM HALL GATE DOOR 24/7 NO. 1 100% 2 FOR 1 A+ 7 "
    "UP 66 42 99"
)
WORDS = tuple(_WORD_LIST.split(" "))
CATEGORIES = ("typography", "posters", "packaging", "apparel")
TOKENIZER_VOCAB_SIZE = 4096


# -- data ---------------------------------------------------------------------------------------------------------
def study_captions() -> list[tuple[str, str]]:
    """(id, canonical caption) of the default study's prompts, the captions the transformers memorise."""
    name, limit = STUDY_PROMPTS
    return [(p.id, p.caption) for p in load_benchmark(name, limit=limit)]


def generated_captions(count: int, seed: int) -> list[str]:
    """Template captions over ``WORDS`` (one or two short strings each): variety for the autoencoder."""
    rng = random.Random(seed)
    captions = []
    for index in range(count):
        texts = tuple(rng.choice(WORDS) for _ in range(rng.choice((1, 1, 2))))
        quoted = " and ".join(f'"{t}"' for t in texts)
        request = ExpansionRequest(f"a sign reading {quoted}", texts, seed + index, rng.choice(CATEGORIES))
        captions.append(canonical_json(build_caption(request)))
    return captions


def to_tensor(images: Sequence[Any]) -> torch.Tensor:
    """PIL images -> (B, 3, H, W) in [-1, 1], the VAE's pixel range."""
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images]) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def pack(latents: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """(B, C, H, W) VAE latents -> (B, H/2 * W/2, C * 4) tokens, the inverse of the pipeline's unpacking."""
    b, c, h, w = latents.shape
    z = latents.view(b, c, h // patch, patch, w // patch, patch)
    return z.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


# -- model --------------------------------------------------------------------------------------------------------
def caption_tokenizer(seed: int) -> Any:
    """The tiny model's byte-level BPE, trained on caption text with merges across spaces and a 4096-token vocabulary:
    template phrases become single tokens, so a benchmark caption is ~30-90 tokens instead of ~200-570. The
    transformers' cost is linear in the packed sequence (text + 256 image tokens), which decides whether training
    fits a CPU-hour and the study its time budget."""
    corpus = [*tiny.TOKENIZER_CORPUS, *(p.caption for p in load_benchmark(STUDY_PROMPTS[0]))]
    corpus += generated_captions(256, seed + 1)
    return tiny.tiny_tokenizer(corpus, TOKENIZER_VOCAB_SIZE, split_words=False)


def build_pipeline(seed: int) -> Ideogram4Pipeline:
    """The untrained pipeline: seeded transformers and VAE, a frozen random Qwen3-VL text encoder as in
    :mod:`quantkit.pipelines.tiny` over the caption tokenizer."""
    tokenizer = caption_tokenizer(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = Transformer(**TRANSFORMER_CONFIG)
        unconditional = Transformer(**TRANSFORMER_CONFIG)
        vae = AutoencoderKLFlux2(**VAE_CONFIG)
    pipe = Ideogram4Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=tiny.tiny_text_encoder(tokenizer, tiny.TINY_SEED + 2),
        tokenizer=tokenizer,
        transformer=transformer,
        unconditional_transformer=unconditional,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.text_encoder.requires_grad_(False)
    return pipe


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        self.pipe = build_pipeline(args.seed)
        self.study = study_captions()
        self.generated = generated_captions(args.generated, args.seed)
        self.state: dict[str, Any] = {"phase": "vae", "step": 0, "seconds": {"vae": 0.0, "dit": 0.0}, "ocr": []}
        self.rng = np.random.default_rng(args.seed)
        self.vae_opt = torch.optim.AdamW(self.pipe.vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        dit_params = [*self.pipe.transformer.parameters(), *self.pipe.unconditional_transformer.parameters()]
        self.dit_opt = torch.optim.AdamW(dit_params, lr=args.lr, weight_decay=0.0)
        self.images: dict[str, torch.Tensor] = {}
        self._resume()

    # -- checkpointing ----------------------------------------------------------------------------------------------
    def _resume(self) -> None:
        path = self.out / "checkpoint.pt"
        if not path.is_file():
            return
        saved = torch.load(path, weights_only=False)
        for name in ("vae", "transformer", "unconditional_transformer"):
            getattr(self.pipe, name).load_state_dict(saved[name])
        self.vae_opt.load_state_dict(saved["vae_opt"])
        self.dit_opt.load_state_dict(saved["dit_opt"])
        self.state = saved["state"]
        self.rng = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        print(f"resumed at {self.state['phase']} step {self.state['step']}", flush=True)

    def checkpoint(self) -> None:
        saved = {
            "vae": self.pipe.vae.state_dict(),
            "transformer": self.pipe.transformer.state_dict(),
            "unconditional_transformer": self.pipe.unconditional_transformer.state_dict(),
            "vae_opt": self.vae_opt.state_dict(),
            "dit_opt": self.dit_opt.state_dict(),
            "state": self.state,
            "rng": self.rng,
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save(saved, tmp)
        tmp.replace(self.out / "checkpoint.pt")

    def log(self, **row: Any) -> None:
        path = self.out / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["phase", "step", "seconds", "loss", "loss_uncond"])
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in writer.fieldnames})

    # -- phase 1: VAE -----------------------------------------------------------------------------------------------
    def rendered(self, caption: str) -> torch.Tensor:
        if caption not in self.images:
            self.images[caption] = to_tensor([render_caption(caption, RESOLUTION)])[0]
        return self.images[caption]

    def train_vae(self) -> None:
        vae, args = self.pipe.vae, self.args
        vae.train()
        study = [c for _, c in self.study]
        start = time.perf_counter() - self.state["seconds"]["vae"]
        while self.state["step"] < args.vae_steps and time.perf_counter() - start < args.vae_minutes * 60:
            batch = []
            for _ in range(args.vae_batch):
                pool = study if self.rng.random() < 0.3 else self.generated
                image = self.rendered(pool[self.rng.integers(len(pool))])
                y, x = self.rng.integers(0, RESOLUTION[0] - args.crop + 1, size=2)
                batch.append(image[:, y : y + args.crop, x : x + args.crop])
            pixels = torch.stack(batch)
            posterior = vae.encode(pixels).latent_dist
            decoded = vae.decode(posterior.sample()).sample
            kl = posterior.kl().mean() / pixels[0].numel()
            loss = F.l1_loss(decoded, pixels) + F.mse_loss(decoded, pixels) + args.kl_weight * kl
            self.vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            self.vae_opt.step()
            self.state["step"] += 1
            self.state["seconds"]["vae"] = time.perf_counter() - start
            if self.state["step"] % 10 == 0:
                self.log(
                    phase="vae",
                    step=self.state["step"],
                    seconds=round(self.state["seconds"]["vae"], 1),
                    loss=round(loss.item(), 5),
                )
            if self.state["step"] % 100 == 0:
                print(
                    f"vae step {self.state['step']} loss {float(loss):.4f} ({self.state['seconds']['vae']:.0f} s)",
                    flush=True,
                )
                self.checkpoint()
        vae.eval()
        self.fit_batch_norm()
        self.state.update(phase="dit", step=0, vae_steps=self.state["step"])
        self.state["vae_ocr"] = self.ocr_images([self.reconstruct(c) for _, c in self.study])
        print(f"vae done: reconstruction OCR exact match {self.state['vae_ocr']:.3f}", flush=True)
        self.checkpoint()

    @torch.no_grad()
    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Packed latents (B, tokens, 32) of the rendered captions, before batch-norm normalisation."""
        pixels = torch.stack([self.rendered(c) for c in captions])
        return pack(self.pipe.vae.encode(pixels).latent_dist.mode())

    @torch.no_grad()
    def fit_batch_norm(self) -> None:
        """Set ``vae.bn`` to the packed latents' per-channel statistics (the pipeline denormalises with them)."""
        captions = [c for _, c in self.study] + self.generated[:256]
        packed = torch.cat([self.encode(captions[i : i + 32]) for i in range(0, len(captions), 32)])
        flat = packed.reshape(-1, packed.shape[-1])
        self.pipe.vae.bn.running_mean.copy_(flat.mean(0))
        self.pipe.vae.bn.running_var.copy_(flat.var(0))

    @torch.no_grad()
    def reconstruct(self, caption: str) -> Any:
        vae = self.pipe.vae
        decoded = vae.decode(vae.encode(self.rendered(caption)[None]).latent_dist.mode()).sample
        return self.pipe.image_processor.postprocess(decoded, output_type="pil")[0]

    # -- phase 2: transformers --------------------------------------------------------------------------------------
    def normalised_targets(self) -> torch.Tensor:
        bn = self.pipe.vae.bn
        packed = self.encode([c for _, c in self.study])
        return (packed - bn.running_mean) / torch.sqrt(bn.running_var + self.pipe.vae.config.batch_norm_eps)

    @torch.no_grad()
    def conditioning(self) -> list[tuple[torch.Tensor, ...]]:
        """Per study caption, the pipeline's own packed conditioning at its exact text length (no padding)."""
        grid = RESOLUTION[0] // 8, RESOLUTION[1] // 8
        result = []
        for _, caption in self.study:
            messages = [{"role": "user", "content": [{"type": "text", "text": caption}]}]
            text = self.pipe.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            n = len(self.pipe.tokenizer(text, add_special_tokens=False)["input_ids"])
            result.append(self.pipe.encode_prompt(caption, *grid, max_sequence_length=n, device=torch.device("cpu")))
        return result

    def train_dit(self) -> None:
        args = self.args
        cond, uncond = self.pipe.transformer, self.pipe.unconditional_transformer
        cond.train()
        uncond.train()
        x0_all = self.normalised_targets()
        conditioning = self.conditioning()
        n_image = x0_all.shape[1]
        start = time.perf_counter() - self.state["seconds"]["dit"]
        budget = args.dit_minutes * 60
        next_eval = self.state["seconds"]["dit"] + args.eval_every
        while time.perf_counter() - start < budget:
            picks = self.rng.choice(len(self.study), size=args.batch, replace=False)
            x0 = x0_all[picks]
            noise = torch.randn_like(x0)
            t = torch.sigmoid(torch.randn(len(picks)) * 1.2)
            uniform = torch.rand(len(picks)) < 0.3
            t = torch.where(uniform, torch.rand(len(picks)), t)
            xt = (1 - t[:, None, None]) * noise + t[:, None, None] * x0
            v = x0 - noise
            embeds, position_ids, segment_ids, indicator = _left_pad([conditioning[i] for i in picks])
            text_len = embeds.shape[1] - n_image
            hidden = torch.cat([torch.zeros(len(picks), text_len, x0.shape[-1]), xt], dim=1)
            out = cond(
                hidden_states=hidden,
                timestep=t,
                encoder_hidden_states=embeds,
                position_ids=position_ids,
                segment_ids=segment_ids,
                indicator=indicator,
                return_dict=False,
            )[0]
            loss = F.mse_loss(out[:, text_len:], v)
            loss_u = torch.zeros(())
            if self.state["step"] % args.uncond_every == 0:  # the average image is easier: a fraction of the steps
                out_u = uncond(
                    hidden_states=xt,
                    timestep=t,
                    encoder_hidden_states=torch.zeros_like(embeds[:, text_len:]),
                    position_ids=position_ids[:, text_len:],
                    segment_ids=segment_ids[:, text_len:],
                    indicator=indicator[:, text_len:],
                    return_dict=False,
                )[0]
                loss_u = F.mse_loss(out_u, v)
                self.state["loss_uncond"] = float(loss_u.detach())
            lr = args.lr * min(1.0, (self.state["step"] + 1) / 50) * _cosine(self.state["seconds"]["dit"] / budget)
            for group in self.dit_opt.param_groups:
                group["lr"] = lr
            self.dit_opt.zero_grad(set_to_none=True)
            (loss + loss_u).backward()
            torch.nn.utils.clip_grad_norm_([*cond.parameters(), *uncond.parameters()], 1.0)
            self.dit_opt.step()
            self.state["step"] += 1
            self.state["seconds"]["dit"] = time.perf_counter() - start
            if self.state["step"] % 5 == 0:
                self.log(
                    phase="dit",
                    step=self.state["step"],
                    seconds=round(self.state["seconds"]["dit"], 1),
                    loss=round(loss.item(), 5),
                    loss_uncond=round(self.state.get("loss_uncond", float("nan")), 5),
                )
            if self.state["step"] % 25 == 0:
                print(
                    f"dit step {self.state['step']} loss {loss.item():.4f} "
                    f"uncond {self.state.get('loss_uncond', 0):.4f} "
                    f"({self.state['seconds']['dit']:.0f} s)",
                    flush=True,
                )
                self.checkpoint()
            if self.state["seconds"]["dit"] >= next_eval:
                next_eval = self.state["seconds"]["dit"] + args.eval_every
                if self.evaluate() >= args.target:
                    break
        self.state["dit_steps"] = self.state["step"]
        self.checkpoint()

    @torch.no_grad()
    def evaluate(self) -> float:
        """FP8-reference OCR exact match on the study prompts with the study's sampler (see ``sample``)."""
        began = time.perf_counter()
        cond, uncond = self.pipe.transformer, self.pipe.unconditional_transformer
        cond.eval()
        uncond.eval()
        images = self.sample(fp8=True)
        rate = self.ocr_images(images, [tuple(_texts(c)) for _, c in self.study])
        cond.train()
        uncond.train()
        self.state["ocr"].append(
            {"step": self.state["step"], "seconds": round(self.state["seconds"]["dit"], 1), "ocr_exact": rate}
        )
        with (self.out / "ocr.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "seconds", "ocr_exact"])
            writer.writeheader()
            writer.writerows(self.state["ocr"])
        samples = self.out / "samples"
        samples.mkdir(exist_ok=True)
        _grid(images).save(samples / f"step{self.state['step']:05d}.png")
        print(
            f"eval step {self.state['step']}: FP8 OCR exact match {rate:.3f} ({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
        return rate

    def sample(self, *, fp8: bool, preset: str | None = None) -> list[Any]:
        from quantkit.pipelines.ideogram4 import PRESETS, generate

        pipe = copy.deepcopy(self.pipe) if fp8 else self.pipe
        if fp8:
            from quantkit import quantize_
            from quantkit.recipes import FP8Reference

            pipe.to(torch.bfloat16)
            pipe.to(torch.float32)  # weights as the bf16 checkpoint stores them
            quantize_(pipe, FP8Reference())
        prompts = load_benchmark(STUDY_PROMPTS[0], limit=STUDY_PROMPTS[1])
        settings = PRESETS[preset or self.args.preset]
        return [g.image for g in generate(pipe, prompts, settings, resolution=RESOLUTION)]

    def ocr_images(self, images: Sequence[Any], texts: Sequence[tuple[str, ...]] | None = None) -> float:
        from quantkit.metrics.ocr import OcrExact

        texts = texts or [tuple(_texts(c)) for _, c in self.study]
        keep = [i for i, t in enumerate(texts) if t]
        values = OcrExact().score(
            [images[i] for i in keep], texts=[list(texts[i]) for i in keep], prompts=[""] * len(keep), references=None
        )
        return float(np.mean(values))

    # -- output -------------------------------------------------------------------------------------------------------
    def save(self) -> None:
        """The pipeline in bf16 (diffusers layout) plus ``provenance.json``."""
        model = self.out / "model"
        pipe = copy.deepcopy(self.pipe).to(torch.bfloat16)
        pipe.save_pretrained(model, safe_serialization=True)
        log = self.out / "log.csv"
        rows = list(csv.DictReader(log.open())) if log.is_file() else []
        last = {phase: next((r for r in reversed(rows) if r["phase"] == phase), {}) for phase in ("vae", "dit")}
        provenance = {
            "script": f"quantkit.training.tiny_text {SCRIPT_VERSION}",
            "command": f"python -m quantkit.training.tiny_text --out {self.out} --seed {self.args.seed}",
            "arguments": {k: str(v) for k, v in vars(self.args).items()},
            "seed": self.args.seed,
            "study_prompts": [i for i, _ in self.study],
            "generated_captions": len(self.generated),
            "vae_steps": self.state.get("vae_steps", int(last["vae"].get("step", 0) or 0)),
            "dit_steps": self.state.get("dit_steps", int(last["dit"].get("step", 0) or 0)),
            "final_loss": {
                "vae": last["vae"].get("loss"),
                "transformer": last["dit"].get("loss"),
                "unconditional_transformer": last["dit"].get("loss_uncond"),
            },
            "wall_seconds": {k: round(v, 1) for k, v in self.state["seconds"].items()},
            "vae_reconstruction_ocr_exact": self.state.get("vae_ocr"),
            "fp8_ocr_exact_during_training": self.state["ocr"],
            "versions": _locked_versions(),
            "machine": f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} torch threads",
        }
        (model / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        print(f"wrote {model}", flush=True)


def write_figure(out: Path, path: Path, samples: Path | None = None) -> Path:
    """Training curves (VAE and transformer losses, FP8 OCR exact match during training) above sample images: the
    PNGs in ``samples`` (e.g. the golden FP8 references), else the last in-training evaluation's grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = list(csv.DictReader((out / "log.csv").open()))
    ocr = list(csv.DictReader((out / "ocr.csv").open()))
    fig = plt.figure(figsize=(12, 7.5))
    grid = fig.add_gridspec(2, 3, height_ratios=(1, 1.1))
    series = (
        ("VAE reconstruction loss (L1 + MSE + KL)", "vae", ("loss",)),
        ("transformers: flow-matching MSE", "dit", ("loss", "loss_uncond")),
    )
    for column, (title, phase, keys) in enumerate(series):
        ax = fig.add_subplot(grid[0, column])
        for key in keys:
            points = [
                (int(r["step"]), float(r[key])) for r in rows if r["phase"] == phase and r[key] not in ("", "nan")
            ]
            if points:
                steps, values = zip(*points, strict=True)
                label = {"loss": "conditional" if phase == "dit" else "VAE", "loss_uncond": "unconditional"}[key]
                smooth = _smooth(values)
                ax.plot(steps[len(steps) - len(smooth) :], smooth, label=label)
        ax.set(title=title, xlabel="step", yscale="log")
        ax.legend()
    ax = fig.add_subplot(grid[0, 2])
    ax.plot([int(r["step"]) for r in ocr], [float(r["ocr_exact"]) for r in ocr], marker="o")
    ax.set(
        title="FP8 PP-OCR exact match during training\n(that sampler: guidance 2, where nothing reads)",
        xlabel="transformer step",
        ylim=(-0.02, 1.02),
    )
    ax = fig.add_subplot(grid[1, :])
    if samples is not None:
        ax.imshow(_grid([Image.open(p).convert("RGB") for p in sorted(samples.glob("*.png"))]))
        ax.set(title=f"FP8 reference images of the default study ({samples})", xticks=[], yticks=[])
    else:
        last = sorted((out / "samples").glob("step*.png"))[-1]
        ax.imshow(Image.open(last))
        ax.set(title=f"FP8 samples at {last.stem} (in-training sampler)", xticks=[], yticks=[])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _cosine(progress: float, floor: float = 0.05) -> float:
    """Learning-rate factor: cosine decay over the time budget (the budget is wall time, not steps)."""
    return max(floor, 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _smooth(values: Sequence[float], window: int = 20) -> list[float]:
    kernel = np.ones(min(window, len(values))) / min(window, len(values))
    return list(np.convolve(values, kernel, mode="valid"))


def _texts(caption: str) -> list[str]:
    from quantkit.prompts.caption import parse

    return list(parse(caption).texts)


def _left_pad(items: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Batch per-caption conditionings of different text lengths the way the pipeline does: left padding with
    zero features, zero positions, segment -1 (masked out of attention) and indicator 0."""
    longest = max(item[0].shape[1] for item in items)
    padded: list[list[torch.Tensor]] = [[], [], [], []]
    for item in items:
        extra = longest - item[0].shape[1]
        for slot, (tensor, fill) in enumerate(zip(item, (0, 0, -1, 0), strict=True)):
            pad = torch.full((1, extra, *tensor.shape[2:]), fill, dtype=tensor.dtype)
            padded[slot].append(torch.cat([pad, tensor], dim=1))
    return tuple(torch.cat(p) for p in padded)


def _grid(images: Sequence[Any]) -> Any:
    from PIL import Image

    w, h = images[0].size
    columns = 5
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (w * columns, h * rows), "white")
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * w, (index // columns) * h))
    return grid


def _locked_versions() -> dict[str, str]:
    import importlib.metadata

    names = ("torch", "diffusers", "transformers", "tokenizers", "rapidocr", "onnxruntime", "pillow", "matplotlib")
    return {name: importlib.metadata.version(name) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the text-capable tiny Ideogram 4 on CPU (resumable).")
    parser.add_argument("--out", type=Path, required=True, help="work folder: checkpoint, logs, samples, model/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generated", type=int, default=512, help="template captions for the VAE")
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-minutes", type=float, default=8)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--dit-minutes", type=float, default=55)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--uncond-every", type=int, default=2, help="train the unconditional copy every N steps")
    parser.add_argument("--eval-every", type=float, default=600, help="seconds of transformer training")
    parser.add_argument("--target", type=float, default=0.9, help="stop at this FP8 OCR exact match")
    parser.add_argument("--preset", default="TINY_TEXT", help="sampler preset for the in-training evaluation")
    parser.add_argument("--no-final-eval", dest="final_eval", action="store_false", help="(smoke runs)")
    parser.add_argument("--figure", type=Path, help="only draw the training curves of --out into this PNG")
    parser.add_argument("--samples", type=Path, help="with --figure: a folder of sample PNGs to show")
    args = parser.parse_args(argv)
    if args.figure:
        print(f"wrote {write_figure(args.out, args.figure, args.samples)}")
        return 0
    trainer = Trainer(args)
    if trainer.state["phase"] == "vae":
        trainer.train_vae()
    if trainer.state["phase"] == "dit":
        trainer.train_dit()
        if args.final_eval:
            trainer.evaluate()
        trainer.state["phase"] = "done"
        trainer.checkpoint()
    trainer.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
