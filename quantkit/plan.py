"""A dry run of every recipe on the full-size Ideogram 4, without weights: what each variant would quantize or keep,
its bytes on disk, and whether it fits a 24 GB RTX 3090 under each ``--offload`` mode.

Both transformer copies are diffusers' ``Ideogram4Transformer2DModel`` with its default config (the real 9.28B copy)
on the meta device. Each recipe's decisions come from :func:`quantkit.quantize.decide_layers`, the same code
``quantize_`` runs, and bytes from each format's block arithmetic (codecs never see a meta tensor): the plan's bytes
equal ``quantize_``'s report on a real model (tested on the tiny one). Memory is an estimate built from shapes:
resident weights per offload mode, the largest activation set of a 1024x1024 forward with the full text-token
budget, and the Qwen3-VL-8B text encoder in bf16.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from quantkit.errors import RecipeError
from quantkit.quantize import BRANCHES, ReportRow, SkipReport, decide_layers
from quantkit.recipes import GGUF, NF4, FP8Reference, Int8W8A8, Recipe, variant_spec

GB, GIB = 1e9, 2**30
# Published on-disk sizes of both transformer copies (paper-and-model.md, section 3.5), decimal GB.
PUBLISHED_GB = {"fp8": 18.6, "int8_w8a8": 20.4, "q4_k": 10.44, "q8_0": 19.7, "nf4": 10.4}
PUBLISHED_PROTECTED_W2 = 17  # feed_forward.w2 kept in bf16 per branch by the published INT8 build
# Qwen3-VL-8B-Instruct's text model (the published text_config; the vision tower is never run by the pipeline).
TEXT_ENCODER = {
    "hidden": 4096,
    "layers": 36,
    "intermediate": 12288,
    "heads": 32,
    "kv_heads": 8,
    "head_dim": 128,
    "vocab": 151936,
    "taps": 13,
}
VAE_PARAMS_DTYPE_BYTES = 2
LATENT_FACTOR = 16  # 8x VAE downsampling times the 2x2 patch
CUDA_CONTEXT_GIB = 0.5  # CUDA context and allocator slack a process cannot use for tensors
OFFLOAD_MODES = ("none", "text_encoder", "model")


def real_transformers(config: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Both CFG copies of the full-size transformer on the meta device, keyed like ``quantize_`` keys a pipeline."""
    from diffusers import Ideogram4Transformer2DModel

    with torch.device("meta"):
        models = {f"{b}.": Ideogram4Transformer2DModel(**(config or {})) for b in BRANCHES}
    return {k: nn.Module.to(m, dtype) for k, m in models.items()}  # nn.Module's cast: no diffusers fp32 warning


def published_recipes(num_layers: int = 34) -> dict[str, Recipe]:
    """The published builds as recipes. INT8 keeps ``PUBLISHED_PROTECTED_W2`` FFN down-projections per branch
    (scaled to ``num_layers``); which ones needs calibration statistics, their sizes do not."""
    k = round(PUBLISHED_PROTECTED_W2 * num_layers / 34)
    return {
        "fp8": FP8Reference(),
        "int8_w8a8": Int8W8A8(protect=tuple(f"layers.{i}.feed_forward.w2" for i in range(k))),
        "q4_k": GGUF(qtype="q4_k"),
        "q8_0": GGUF(qtype="q8_0"),
        "nf4": NF4(),
    }


def packed_bytes(recipe: Recipe, out_features: int, in_features: int) -> int:
    """Bytes of one quantized weight, from the format's layout (what ``QuantizedLinear.nbytes`` counts)."""
    return recipe.packed_bytes(out_features, in_features)


def plan_variant(models: Mapping[str, nn.Module], recipe: Recipe) -> SkipReport:
    """``quantize_``'s report for ``recipe`` on ``models`` without quantizing: decisions and bytes from shapes.

    ``protect=k`` and ``"auto"`` raise :class:`RecipeError` (they choose layers from calibration statistics)."""
    linears = {
        p + n: (n, m) for p, model in models.items() for n, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    decisions = {d.name: d for d in decide_layers(linears, recipe, calibration=None)}
    rows = []
    for prefix, model in models.items():
        for name, module in model.named_modules():
            params = list(module.parameters(recurse=False))
            if not params:
                continue
            full = prefix + name
            decision = decisions.get(full)
            numel = sum(p.numel() for p in params)
            if decision is not None and decision.quantize:
                bias = 0 if module.bias is None else module.bias.numel() * _stored_itemsize(recipe, module.bias, False)
                size = packed_bytes(recipe, module.out_features, module.in_features) + bias
                shape = (module.out_features, module.in_features)
                rows.append(ReportRow(full, shape, "quantized", decision.reason, recipe.format, size, numel))
                continue
            reason = decision.reason if decision is not None else _kind(module, params)
            size = sum(
                p.numel() * _stored_itemsize(recipe, p, isinstance(module, nn.Linear) and p.dim() == 2) for p in params
            )
            dtype = str(params[0].dtype).removeprefix("torch.")
            rows.append(ReportRow(full, tuple(params[0].shape), "kept", reason, dtype, size, numel))
    return SkipReport(recipe, tuple(rows))


def _stored_itemsize(recipe: Recipe, tensor: torch.Tensor, linear_weight: bool) -> int:
    """Bytes per element as the variant's checkpoint stores an unquantized tensor (GGUF: quantkit.io.gguf's rule)."""
    if variant_spec(recipe.name).checkpoint == "gguf":
        return 2 if linear_weight else 4
    return tensor.element_size()


def _kind(module: nn.Module, params: list[torch.Tensor]) -> str:
    if isinstance(module, nn.Embedding):
        return "embedding"
    if "norm" in type(module).__name__.lower():
        return "norm"
    return f"not a linear ({type(module).__name__})"


def calibration_needs(models: Mapping[str, nn.Module], recipe: Int8W8A8, steps: int = 48) -> str:
    """What ``protect=k`` / ``"auto"`` would need on this model: the statistics ``quantkit.calibrate`` records."""
    linears = [m for model in models.values() for m in model.modules() if isinstance(m, nn.Linear)]
    channels = sum(m.in_features for m in linears)
    size = steps * channels * 2 * 4  # absmax and sum of squares, float32, per step and input channel
    return (
        f"Int8W8A8(protect={recipe.protect!r}) ranks layers by fragility from calibration statistics: per-channel "
        f"activation absmax and naive-W8A8 error at each of {steps} denoising steps for all {len(linears)} linears "
        f"of both copies (~{size / 2**20:.0f} MiB), recorded by quantkit.calibrate.run.calibrate_pipeline on the "
        "real weights ($QUANTKIT_IDEOGRAM4_DIR) over the calibration prompts; without them name the layers "
        "(the published build kept 17 '*.feed_forward.w2' per branch)"
    )


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Peak device memory of one image (GiB), by component; ``fits`` against the GPU's memory."""

    offload: str
    transformers: float
    text_encoder: float
    vae: float
    activations: float
    context: float
    gpu: float

    @property
    def peak(self) -> float:
        return self.transformers + self.text_encoder + self.vae + self.activations + self.context

    @property
    def fits(self) -> bool:
        return self.peak <= self.gpu


def memory_plans(
    models: Mapping[str, nn.Module],
    report: SkipReport,
    *,
    resolution: tuple[int, int] = (1024, 1024),
    text_tokens: int = 2048,
    gpu_gib: float = 24.0,
) -> list[MemoryPlan]:
    """The variant's peak memory at ``resolution`` with ``text_tokens`` text tokens, per ``--offload`` mode.

    Resident: ``none`` keeps everything on the GPU; ``text_encoder`` streams the encoder leaf by leaf (its largest
    leaf, the token embedding, is resident while it encodes); ``model`` also streams each transformer block by
    block (one block and the copy's other layers). Activations: the larger of the encoder's pass (its 13 tapped
    hidden states and one MLP), a transformer forward (the packed sequence through attention or the SwiGLU MLP,
    plus the largest weight a weight-only format dequantizes, or int8's int32 GEMM output) and the VAE decode."""
    model = next(iter(models.values()))
    cfg = model.config
    emb, inter = cfg.num_attention_heads * cfg.attention_head_dim, cfg.intermediate_size
    tokens = text_tokens + (resolution[0] // LATENT_FACTOR) * (resolution[1] // LATENT_FACTOR)
    weights = sum(r.bytes for r in report.rows)
    per_block = _block_bytes(report)
    te = _text_encoder_params()
    te_bytes = 2 * te["total"]
    vae_bytes = VAE_PARAMS_DTYPE_BYTES * _vae_params()
    largest = max(r.numel for r in report.rows if r.action == "quantized") if report.quantized else 0
    transient = 4 * tokens * max(emb * 3, inter) if isinstance(report.recipe, Int8W8A8) else 2 * largest
    dit_act = 2 * tokens * max(9 * emb, 3 * emb + 3 * inter) + 2 * text_tokens * cfg.llm_features_dim + transient
    te_act = 2 * text_tokens * (TEXT_ENCODER["taps"] * TEXT_ENCODER["hidden"] + 3 * TEXT_ENCODER["intermediate"])
    vae_act = 4 * 2 * 128 * resolution[0] * resolution[1]  # four 128-channel full-resolution maps in bf16
    activations = max(te_act, dit_act, vae_act) / GIB
    plans = []
    for mode in OFFLOAD_MODES:
        text_encoder = te_bytes if mode == "none" else 2 * te["largest_leaf"]
        transformers = weights if mode != "model" else per_block
        plans.append(
            MemoryPlan(
                mode, transformers / GIB, text_encoder / GIB, vae_bytes / GIB, activations, CUDA_CONTEXT_GIB, gpu_gib
            )
        )
    return plans


def _block_bytes(report: SkipReport) -> int:
    """Bytes resident when a transformer streams block by block: its largest block plus its non-block layers."""
    blocks: dict[str, int] = {}
    other = 0
    for row in report.rows:
        if not row.layer.startswith(f"{BRANCHES[0]}."):
            continue
        parts = row.layer.split(".")
        if parts[1] == "layers":
            blocks[parts[2]] = blocks.get(parts[2], 0) + row.bytes
        else:
            other += row.bytes
    return max(blocks.values(), default=0) + other


def _text_encoder_params() -> dict[str, int]:
    t = TEXT_ENCODER
    attention = t["hidden"] * t["heads"] * t["head_dim"] * 2 + t["hidden"] * t["kv_heads"] * t["head_dim"] * 2
    layer = attention + 3 * t["hidden"] * t["intermediate"] + 2 * t["hidden"] + 2 * t["head_dim"]
    embedding = t["vocab"] * t["hidden"]
    return {"total": embedding + t["layers"] * layer + t["hidden"], "largest_leaf": embedding}


def _vae_params() -> int:
    from diffusers import AutoencoderKLFlux2

    with torch.device("meta"):
        return sum(p.numel() for p in AutoencoderKLFlux2().parameters())


# -- the printed plan -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VariantPlan:
    name: str
    report: SkipReport | None
    memory: list[MemoryPlan]
    note: str = ""

    @property
    def disk_gb(self) -> float:
        return sum(r.bytes for r in self.report.rows) / GB if self.report else float("nan")


def plan(
    variants: tuple[str, ...] = tuple(PUBLISHED_GB),
    *,
    protect: int | str | None = None,
    resolution: tuple[int, int] = (1024, 1024),
    text_tokens: int = 2048,
    gpu_gib: float = 24.0,
    config: Mapping[str, Any] | None = None,
) -> list[VariantPlan]:
    """The plan of each variant on the full-size model (``config`` overrides diffusers' defaults, for tests).

    ``protect``: INT8's ``protect=N`` / ``"auto"``; without calibration statistics the plan says what they need
    and sizes the published choice instead."""
    models = real_transformers(config)
    recipes = published_recipes(next(iter(models.values())).config.num_layers)
    out = []
    for name in variants:
        if name not in recipes:
            raise RecipeError(f"unknown variant {name!r}; known: {', '.join(recipes)}")
        recipe, note = recipes[name], ""
        if name == "int8_w8a8" and protect is not None:
            asked = Int8W8A8(protect=protect)
            try:
                plan_variant(models, asked)
            except RecipeError:
                note = calibration_needs(models, asked)
        report = plan_variant(models, recipe)
        memory = memory_plans(models, report, resolution=resolution, text_tokens=text_tokens, gpu_gib=gpu_gib)
        out.append(VariantPlan(name, report, memory, note))
    return out


def format_plan(plans: list[VariantPlan], *, layers: bool = False) -> str:
    lines = [
        "Ideogram 4 full size (diffusers Ideogram4Transformer2DModel defaults, 2 copies, meta device): "
        f"{_params(plans):,} parameters per copy",
        "",
        "linears per copy as diffusers counts them: 279 = the original 211 with attention.qkv split into to_q/k/v",
        f"{'variant':<10} {'quantized':>9} {'kept':>5} {'disk GB':>8} {'published':>9} {'diff':>6}   kept linears, why",
    ]
    for p in plans:
        per_copy = [r for r in p.report.rows if r.layer.startswith(f"{BRANCHES[0]}.")]
        quantized = sum(r.action == "quantized" for r in per_copy)
        kept_linears = [
            r
            for r in per_copy
            if r.action == "kept"
            and r.fmt
            and r.reason not in ("norm", "embedding")
            and not r.reason.startswith("not a linear")
        ]
        reasons: dict[str, int] = {}
        for r in kept_linears:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        why = "; ".join(f"{n} x {reason}" for reason, n in reasons.items()) or "none"
        published = PUBLISHED_GB.get(p.name)
        diff = f"{100 * (p.disk_gb / published - 1):+.1f}%" if published else ""
        lines.append(
            f"{p.name:<10} {quantized:>9} {len(kept_linears):>5} {p.disk_gb:>8.2f} {published:>9} {diff:>6}   {why}"
        )
    lines += ["", "memory at 1024x1024 (GiB; RTX 3090 24 GiB): weights resident + activations + CUDA context"]
    lines.append(f"{'variant':<10} " + " ".join(f"{m:>22}" for m in OFFLOAD_MODES))
    for p in plans:
        cells = [f"{m.peak:6.1f} {'fits' if m.fits else 'does not fit':>15}" for m in p.memory]
        lines.append(f"{p.name:<10} " + " ".join(f"{c:>22}" for c in cells))
    first = plans[0].memory[0]
    lines.append(
        f"components: text encoder (Qwen3-VL-8B text model, bf16) {first.text_encoder:.1f} GiB resident or "
        f"{plans[0].memory[1].text_encoder:.1f} GiB streamed; VAE {first.vae:.2f}; activations "
        + ", ".join(f"{p.name} {p.memory[0].activations:.2f}" for p in plans)
    )
    for p in plans:
        if p.note:
            lines.append(f"{p.name}: {p.note}")
    if layers:
        for p in plans:
            lines += ["", p.report.format_table()]
    return "\n".join(lines)


def _params(plans: list[VariantPlan]) -> int:
    return sum(r.numel for r in plans[0].report.rows if r.layer.startswith(f"{BRANCHES[0]}."))
