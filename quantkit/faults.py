"""Planted faults: named, realistic bugs injected at run time to measure what the gate profile catches.

Each :class:`Fault` patches one function or value of quantkit (never its source) inside a context manager, with a
severity knob (``0`` would be no fault; the unit is the fault's own, stated in its description). ``variants`` are the
variants whose images it changes (all of them for a pipeline fault, none for a harness fault, which changes scores).
While a fault is injected its variants' code identity is salted (:func:`salted_identity`), so their images and
calibration are regenerated rather than read from the cache, and a baseline run sees them as changed.

``effect`` says what the fault does to the output: ``"worse"`` (less faithful) or ``"different"`` (changed, not
necessarily worse: a Q4_K encoder without its scale search *raises* PSNR on some weights). A bit-exact codec's bytes
changing is a regression whatever PSNR does; :mod:`quantkit.codec_digests` is the check that sees it.
``probe`` returns something a fault changes (bytes, activations, arguments, scores) on a small fixed input: the unit
tests check that it differs inside ``inject`` and is restored after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal
from unittest import mock

import torch

# The variants the catalogue plants faults in: the default study's.
ALL_VARIANTS = ("fp8", "int8_w8a8", "q4_k", "q8_0", "nf4")

Patch = Callable[[float], contextlib.AbstractContextManager[None]]


@dataclasses.dataclass(frozen=True)
class Fault:
    name: str
    family: str
    stage: str
    variants: tuple[str, ...]  # variants whose images it changes
    description: str
    severities: tuple[float, ...]
    must_catch: float  # severity that must be caught
    effect: Literal["worse", "different"]
    patch: Patch = dataclasses.field(repr=False, compare=False)
    probe: Callable[[], Any] = dataclasses.field(repr=False, compare=False)
    scores: bool = False  # a harness fault: score cache ids are salted too

    @property
    def graded(self) -> bool:
        return len(self.severities) > 1

    @contextlib.contextmanager
    def inject(self, severity: float | None = None) -> Iterator[None]:
        """The fault at ``severity`` (its must-catch severity by default); everything is restored on exit."""
        severity = self.must_catch if severity is None else float(severity)
        if not severity > 0:
            raise ValueError(f"fault {self.name}: severity must be > 0, got {severity}")
        with salted_identity(self.variants, f"{self.name}={severity:g}", scores=self.scores), self.patch(severity):
            yield


@contextlib.contextmanager
def salted_identity(variants: tuple[str, ...], salt: str, *, scores: bool = False) -> Iterator[None]:
    """The one place a fault touches cache identity: the code version of ``variants`` (their quantizer version, or
    the generation code of every image when all variants change) and, with ``scores``, every score id."""
    from quantkit import generation, study

    tag = f"+fault:{salt}"
    every = set(variants) >= set(ALL_VARIANTS)
    quantizer_version, generation_code_version, score_id = (
        generation.quantizer_version,
        generation.generation_code_version,
        study._score_id,
    )
    with contextlib.ExitStack() as stack:
        if variants and not every:
            salted = lambda v=None: quantizer_version(v) + (tag if v in variants or v is None else "")  # noqa: E731
            stack.enter_context(mock.patch.object(generation, "quantizer_version", salted))
        if every:
            stack.enter_context(
                mock.patch.object(
                    generation, "generation_code_version", lambda pipe: generation_code_version(pipe) + tag
                )
            )
        if scores:
            stack.enter_context(mock.patch.object(study, "_score_id", lambda *a: score_id(*a) + tag))
        yield


# -- probes: a small fixed input each fault must change --------------------------------------------------------------


def _weight(rows: int = 8, cols: int = 256) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(rows, cols, generator=generator) * 0.05


def _codec_bytes(fmt: str) -> Callable[[], bytes]:
    def probe() -> bytes:
        from quantkit import codecs

        packed = codecs.quantize(_weight(), fmt)
        parts = [packed.data, packed.scale] if packed.scale is not None else [packed.data]
        return b"".join(p.contiguous().view(torch.uint8).numpy().tobytes() for p in parts)

    return probe


def _layer_output(make: Callable[[torch.nn.Linear], torch.nn.Module]) -> Callable[[], torch.Tensor]:
    def probe() -> torch.Tensor:
        linear = torch.nn.Linear(256, 8)
        with torch.no_grad():
            linear.weight.copy_(_weight())
            linear.bias.copy_(torch.linspace(-1, 1, 8))
        x = torch.randn(4, 256, generator=torch.Generator().manual_seed(1)) * 3
        return make(linear)(x).detach()

    return probe


def _w8a8(linear: torch.nn.Linear) -> torch.nn.Module:
    from quantkit.nn.w8a8 import W8A8Linear

    return W8A8Linear.from_linear(linear)


def _gguf(linear: torch.nn.Linear) -> torch.nn.Module:
    from quantkit.nn.gguf import GGUFLinear

    return GGUFLinear.from_linear(linear, "q8_0")


def _calibration() -> Any:
    """Synthetic statistics of one branch (two linears with outlier channels), as StatsCollector records them."""
    from quantkit.calibrate.stats import StatsCollector

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16))
    with StatsCollector(model) as collector:
        for step in range(4):
            collector.set_step(step)
            x = torch.randn(8, 16) * (1 + step)
            x[:, 3] *= 20
            model(x)
    return model, collector.result()


def _smoothing_probe() -> torch.Tensor:
    model, stats = _calibration()
    return stats.smoothing("0", model[0].weight, 0.5)


def _protection_probe() -> list[str]:
    _, stats = _calibration()
    return stats.protected_layers(2)


def _calibration_steps_probe() -> int:
    from quantkit.calibrate import run
    from quantkit.pipelines.ideogram4 import PRESETS

    seen = []
    with (
        mock.patch("quantkit.pipelines.ideogram4.generate", lambda pipe, prompts, settings, **_: seen.append(settings)),
        mock.patch.object(run, "StatsCollector", _NullCollector),
    ):
        run.calibrate_pipeline(mock.Mock(), ["p"], PRESETS["TINY_TEXT"], resolution=(8, 8))
    return seen[0].steps


class _NullCollector:
    def __init__(self, *_: object, **__: object) -> None: ...
    def __enter__(self) -> _NullCollector:
        return self

    def __exit__(self, *_: object) -> None: ...
    def result(self) -> None: ...


def _sampler_probe() -> dict[str, Any]:
    from quantkit.pipelines.ideogram4 import PRESETS, sampler_kwargs

    kwargs = sampler_kwargs(_probe_prompt(), PRESETS["TINY_TEXT"], (128, 128))
    kwargs["generator"] = int(kwargs["generator"].initial_seed())
    return kwargs


def _probe_prompt() -> Any:
    from quantkit.prompts.benchmark import load_benchmark

    return load_benchmark("benchmark-v1", limit=1, split="evaluation")[0]


def _ocr_probe() -> list[Any]:
    from quantkit.metrics import ocr

    return [(m.target, m.ned) for m in ocr.match_elements("open daily", ["OPEN Daily", "Ａ1"])]


def _reference_probe() -> dict[str, Any]:
    """The (image, reference) pairs Study._score hands a fidelity metric, on stand-in images."""
    from quantkit import study

    seen: dict[str, Any] = {}

    class Metric:
        name, info, batch_size = "psnr", {}, 8

        def score(self, images, *, prompts, references, texts):
            seen.update({p: (i, r) for p, i, r in zip(prompts, images, references, strict=True)})
            return [0.0] * len(images)

    class Cache:
        load_score = staticmethod(lambda *_: None)
        store_score = staticmethod(lambda *_: None)

    def image(name: str) -> Any:
        return mock.Mock(image=name, key=mock.Mock(digest=name))

    prompts = [mock.Mock(id=f"p{i}", raw=f"p{i}", texts=()) for i in range(4)]
    run = study.Study.__new__(study.Study)
    run.progress, run.__dict__["cache"] = False, Cache()
    run._score(
        Metric(), {p.id: image(f"v-{p.id}") for p in prompts}, prompts, {p.id: image(f"r-{p.id}") for p in prompts}
    )
    return seen


# -- patches ------------------------------------------------------------------------------------------------------


def _replace_codec(fmt: str, wrap: Callable[[Callable[..., Any], float], Callable[..., Any]]) -> Patch:
    """Wrap codec ``fmt``'s ``quantize`` (every caller goes through ``quantkit.codecs.codec(fmt).quantize``)."""

    def patch(severity: float) -> contextlib.AbstractContextManager[None]:
        from quantkit import codecs

        module = codecs.codec(fmt)
        return mock.patch.object(module, "quantize", wrap(module.quantize, severity))

    return patch


def _scaled_scale(quantize: Callable[..., Any], severity: float) -> Callable[..., Any]:
    def buggy(w: torch.Tensor, **options: Any) -> Any:
        packed = quantize(w, **options)
        return dataclasses.replace(packed, scale=packed.scale * (1 + severity))

    return buggy


def _scaled_block_d(block_bytes: int) -> Callable[[Callable[..., Any], float], Callable[..., Any]]:
    """Multiply the fp16 ``d`` in the first two bytes of every GGUF block by (1 + severity)."""

    def wrap(quantize: Callable[..., Any], severity: float) -> Callable[..., Any]:
        def buggy(w: torch.Tensor, **options: Any) -> Any:
            packed = quantize(w, **options)
            blocks = packed.data.reshape(-1, block_bytes).clone()
            d = blocks[:, 0:2].contiguous().view(torch.float16).float() * (1 + severity)
            blocks[:, 0:2] = d.half().view(torch.uint8)
            return dataclasses.replace(packed, data=blocks.reshape(packed.data.shape))

        return buggy

    return wrap


def _int8_rounding(quantize: Callable[..., Any], severity: float) -> Callable[..., Any]:
    from quantkit.codecs import base, int8

    def buggy(w: torch.Tensor, *, name: str = "tensor") -> Any:
        biased = lambda x: torch.round(x - severity / 2)  # noqa: E731
        return base.quantize_per_row(w, int8.FORMAT, name, qmax=int8.QMAX, codes=torch.int8, to_codes=biased)

    return buggy


def _fp8_truncation(quantize: Callable[..., Any], severity: float) -> Callable[..., Any]:
    """Round toward zero instead of to nearest in the leading ``severity`` fraction of rows."""

    def buggy(w: torch.Tensor, **options: Any) -> Any:
        packed = quantize(w, **options)
        rows = packed.data.reshape(packed.data.shape[0], -1)
        truncated = math.ceil(severity * rows.shape[0])
        source = w.detach().reshape(rows.shape[0], -1)[:truncated].float() / torch.where(
            packed.scale[:truncated] > 0, packed.scale[:truncated], 1.0
        )[:, None].to(w.device)
        codes = rows[:truncated]
        bits = codes.view(torch.uint8)
        over = (codes.float().abs() > source.abs()) & (bits & 0x7F != 0)
        data = rows.clone()
        data[:truncated] = torch.where(over, bits - 1, bits).view(torch.float8_e4m3fn)
        return dataclasses.replace(packed, data=data.reshape(packed.data.shape))

    return buggy


def _q4_k_without_search(severity: float) -> contextlib.AbstractContextManager[None]:
    """Drop the last ``severity`` fraction of the 21 candidate steps of make_qkx2_quants (eager path, which reads
    the list; the compiled kernel carries its own copy, so it is switched off)."""
    from quantkit.codecs import q4_k

    keep = round(len(q4_k._STEP_NUMERATORS) * (1 - severity))
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(q4_k, "_STEP_NUMERATORS", q4_k._STEP_NUMERATORS[:keep]))
    stack.enter_context(mock.patch.object(q4_k, "_kernel", None))
    return stack


def _nf4_code_table(severity: float) -> contextlib.AbstractContextManager[None]:
    """The encoder's NF4 table with its interior entries moved outward by ``severity`` (the decoder's own copy, in
    bitsandbytes or this codec's dequantize, is unchanged): codes are chosen against the wrong thresholds."""
    from quantkit.codecs import nf4

    table = torch.tensor(nf4.NF4_CODE)
    interior = (table.abs() < 1) & (table != 0)
    wrong = torch.where(interior, (table * (1 + severity)).clamp(-1, 1), table)

    def encoder_code(device: Any = "cpu") -> torch.Tensor:
        return wrong.to(device)

    def quantize(w: torch.Tensor, **options: Any) -> Any:
        with mock.patch.object(nf4, "nf4_code", encoder_code):
            return original(w, **options)

    original = nf4.quantize
    return mock.patch.object(nf4, "quantize", quantize)


def _nf4_nibble_order(quantize: Callable[..., Any], severity: float) -> Callable[..., Any]:
    """High and low nibbles swapped in the leading ``severity`` fraction of NF4 blocks (a block-layout bug)."""

    def buggy(w: torch.Tensor, **options: Any) -> Any:
        packed = quantize(w, **options)
        flat = packed.data.reshape(-1).clone()
        block = int(packed.extra["blocksize"]) // 2
        n = math.ceil(severity * flat.numel() / block) * block
        flat[:n] = (flat[:n] << 4) | (flat[:n] >> 4)
        return dataclasses.replace(packed, data=flat.reshape(packed.data.shape))

    return buggy


def _activation_scale(severity: float) -> contextlib.AbstractContextManager[None]:
    """W8A8's per-token activation scale shrunk by ``severity``: the largest activations clip at +-127."""
    from quantkit.nn import w8a8

    def buggy(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = rows.abs().amax(dim=1) / w8a8.QMAX * (1 - severity)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        codes = torch.round(rows / safe[:, None]).clamp_(-w8a8.QMAX, w8a8.QMAX).to(torch.int8)
        return codes, scale

    return mock.patch.object(w8a8, "quantize_per_token", buggy)


def _accumulator_dtype(severity: float) -> contextlib.AbstractContextManager[None]:
    """W8A8's int32 accumulator passed through bfloat16 before it is rescaled (a dtype slip in the epilogue)."""
    from quantkit.nn import w8a8

    original = w8a8.exact_int_mm

    def buggy(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
        return original(x_q, w_q).to(torch.bfloat16).to(torch.int32)

    return mock.patch.object(w8a8, "exact_int_mm", buggy)


def _gguf_bias(severity: float) -> contextlib.AbstractContextManager[None]:
    """GGUF layers (Q4_K, Q8_0) apply ``(1 - severity)`` of their bias."""
    from quantkit.nn.gguf import GGUFLinear

    def bias_for(self: Any, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.bias is None else (self.bias * (1 - severity)).to(x.dtype)

    return mock.patch.object(GGUFLinear, "_bias_for", bias_for)


def _alpha(severity: float) -> contextlib.AbstractContextManager[None]:
    """SmoothQuant migration strength ``alpha + severity`` (capped at 1) instead of the recipe's."""
    from quantkit.calibrate.stats import CalibrationStats

    original = CalibrationStats.smoothing

    def smoothing(self: Any, layer: str, weight: torch.Tensor, alpha: float) -> torch.Tensor | None:
        return original(self, layer, weight, min(1.0, alpha + severity))

    return mock.patch.object(CalibrationStats, "smoothing", smoothing)


def _protection(severity: float) -> contextlib.AbstractContextManager[None]:
    """The leading ``severity`` fraction of the fragility-chosen protected layers is quantized after all."""
    from quantkit.calibrate.stats import CalibrationStats

    original = CalibrationStats.protected_layers

    def protected_layers(self: Any, protect: Any) -> list[str]:
        layers = original(self, protect)
        return layers[math.ceil(severity * len(layers)) :]

    return mock.patch.object(CalibrationStats, "protected_layers", protected_layers)


def _calibration_steps(severity: float) -> contextlib.AbstractContextManager[None]:
    """Calibration runs only the first ``1 - severity`` of the sampler's steps (at least one): the late, low-noise
    steps' activations never reach the statistics."""
    from quantkit.calibrate import run

    original = run.calibrate_pipeline

    def calibrate_pipeline(pipe: Any, prompts: Any, settings: Any, **options: Any) -> Any:
        steps = max(1, round(settings.steps * (1 - severity)))
        short = dataclasses.replace(settings, steps=steps, guidance_schedule=settings.guidance_schedule[:steps])
        return original(pipe, prompts, short, **options)

    return mock.patch.object(run, "calibrate_pipeline", calibrate_pipeline)


def _sampler(change: Callable[[dict[str, Any], float], None]) -> Patch:
    """Patch the arguments every image is generated with (``sampler_kwargs``), for every variant."""

    def patch(severity: float) -> contextlib.AbstractContextManager[None]:
        from quantkit.pipelines import ideogram4

        original = ideogram4.sampler_kwargs

        def sampler_kwargs(prompt: Any, settings: Any, resolution: tuple[int, int]) -> dict[str, Any]:
            kwargs = original(prompt, settings, resolution)
            change(kwargs, severity)
            return kwargs

        return mock.patch.object(ideogram4, "sampler_kwargs", sampler_kwargs)

    return patch


def _guidance(kwargs: dict[str, Any], severity: float) -> None:
    kwargs["guidance_schedule"] = [g * (1 + severity) for g in kwargs["guidance_schedule"]]


def _steps(kwargs: dict[str, Any], severity: float) -> None:
    steps = max(1, kwargs["num_inference_steps"] - int(severity))
    kwargs["num_inference_steps"], kwargs["guidance_schedule"] = steps, kwargs["guidance_schedule"][:steps]


def _seed(kwargs: dict[str, Any], severity: float) -> None:
    kwargs["generator"] = torch.Generator("cpu").manual_seed(kwargs["generator"].initial_seed() + int(severity))


def _ocr_case(severity: float) -> contextlib.AbstractContextManager[None]:
    """OCR normalisation stops folding case (and NFKC): 'OPEN' no longer matches a read 'open'."""
    from quantkit.metrics import ocr

    def normalise(text: str, case: str = "fold") -> str:
        if case not in ("fold", "sensitive"):
            raise ValueError(f"case must be 'fold' or 'sensitive', got {case!r}")
        return " ".join(text.split())

    return mock.patch.object(ocr, "normalise", normalise)


def _fidelity_reference(severity: float) -> contextlib.AbstractContextManager[None]:
    """The leading ``severity`` fraction of prompts is compared with the variant's own image instead of the
    reference's: fidelity looks perfect where it was never measured."""
    from quantkit import study

    original = study.Study._score

    def score(self: Any, metric: Any, images: Any, prompts: Any, references: Any) -> Any:
        if references is not None:
            own = {p.id for p in prompts[: math.ceil(severity * len(prompts))]}
            references = {pid: images[pid] if pid in own else ref for pid, ref in references.items()}
        return original(self, metric, images, prompts, references)

    return mock.patch.object(study.Study, "_score", score)


def _fault(name: str, family: str, stage: str, variants: tuple[str, ...], **fields: Any) -> Fault:
    return Fault(name=name, family=family, stage=stage, variants=variants, **fields)


_FAULTS = (
    _fault(
        "int8_scale",
        "codec scale",
        "codec",
        ("int8_w8a8",),
        description="INT8 per-channel weight scales stored x (1 + severity): every weight decodes that much larger.",
        severities=(0.002, 0.01, 0.05, 0.5),
        must_catch=0.002,
        effect="worse",
        patch=_replace_codec("int8", _scaled_scale),
        probe=_codec_bytes("int8"),
    ),
    _fault(
        "int8_rounding",
        "codec rounding",
        "codec",
        ("int8_w8a8",),
        description="INT8 codes rounded after subtracting severity/2 levels (1.0: round half down, a floor bias).",
        severities=(0.1, 0.5, 1.0),
        must_catch=0.1,
        effect="worse",
        patch=_replace_codec("int8", _int8_rounding),
        probe=_codec_bytes("int8"),
    ),
    _fault(
        "q8_0_scale",
        "codec scale",
        "codec",
        ("q8_0",),
        description="Q8_0 block scale d (fp16) x (1 + severity) in every block.",
        severities=(0.002, 0.01, 0.05, 0.5),
        must_catch=0.002,
        effect="worse",
        patch=_replace_codec("q8_0", _scaled_block_d(34)),
        probe=_codec_bytes("q8_0"),
    ),
    _fault(
        "q4_k_scale",
        "codec scale",
        "codec",
        ("q4_k",),
        description="Q4_K super-block d (fp16 scale of the 6-bit sub-block scales) x (1 + severity).",
        severities=(0.002, 0.02, 0.15, 0.5),
        must_catch=0.002,
        effect="worse",
        patch=_replace_codec("q4_k", _scaled_block_d(144)),
        probe=_codec_bytes("q4_k"),
    ),
    _fault(
        "q4_k_no_refinement",
        "codec scale search",
        "codec",
        ("q4_k",),
        description="Q4_K's scale/min search (make_qkx2_quants) tries only the first 1 - severity of its 21 "
        "candidate steps (1.0: min/max only). Different, not worse: PSNR against FP8 can rise.",
        severities=(0.25, 0.5, 1.0),
        must_catch=0.25,
        effect="different",
        patch=_q4_k_without_search,
        probe=_codec_bytes("q4_k"),
    ),
    _fault(
        "nf4_code_table",
        "codec code table",
        "codec",
        ("nf4",),
        description="The NF4 encoder's code table has its interior entries x (1 + severity); the decoder's is "
        "right, so codes are picked against wrong thresholds.",
        severities=(0.01, 0.05, 0.2),
        must_catch=0.01,
        effect="worse",
        patch=_nf4_code_table,
        probe=_codec_bytes("nf4"),
    ),
    _fault(
        "nf4_nibble_order",
        "codec block layout",
        "codec",
        ("nf4",),
        description="High and low nibbles swapped in the leading severity fraction of NF4's blocks.",
        severities=(0.001, 0.01, 0.1, 1.0),
        must_catch=0.001,
        effect="worse",
        patch=_replace_codec("nf4", _nf4_nibble_order),
        probe=_codec_bytes("nf4"),
    ),
    _fault(
        "fp8_truncation",
        "codec rounding",
        "codec",
        ("fp8",),
        description="FP8 e4m3 codes rounded toward zero instead of to nearest in the leading severity fraction of "
        "rows. FP8 is the reference, so every fidelity score moves with it.",
        severities=(0.1, 1.0),
        must_catch=0.1,
        effect="worse",
        patch=_replace_codec("fp8_e4m3", _fp8_truncation),
        probe=_codec_bytes("fp8_e4m3"),
    ),
    _fault(
        "w8a8_activation_scale",
        "layer activation scaling",
        "layer",
        ("int8_w8a8",),
        description="W8A8's per-token activation scale x (1 - severity): the largest activations clip.",
        severities=(0.05, 0.2, 0.5),
        must_catch=0.2,
        effect="worse",
        patch=_activation_scale,
        probe=_layer_output(_w8a8),
    ),
    _fault(
        "w8a8_accumulator_dtype",
        "layer dtype",
        "layer",
        ("int8_w8a8",),
        description="W8A8's int32 accumulator passes through bfloat16 before rescaling (8 mantissa bits).",
        severities=(1.0,),
        must_catch=1.0,
        effect="worse",
        patch=_accumulator_dtype,
        probe=_layer_output(_w8a8),
    ),
    _fault(
        "gguf_bias",
        "layer bias",
        "layer",
        ("q4_k", "q8_0"),
        description="GGUF layers (Q4_K, Q8_0) add only (1 - severity) of their bias.",
        severities=(0.1, 0.5, 1.0),
        must_catch=0.5,
        effect="worse",
        patch=_gguf_bias,
        probe=_layer_output(_gguf),
    ),
    _fault(
        "smoothquant_alpha",
        "calibration smoothing",
        "calibration",
        ("int8_w8a8",),
        description="SmoothQuant migration strength alpha + severity (the study's 0.5 -> 1.0 at 0.5).",
        severities=(0.1, 0.25, 0.5),
        must_catch=0.5,
        effect="different",
        patch=_alpha,
        probe=_smoothing_probe,
    ),
    _fault(
        "protection_dropped",
        "calibration protection",
        "calibration",
        ("int8_w8a8",),
        description="The leading severity fraction of the fragility-chosen bf16 layers is quantized after all.",
        severities=(0.5, 1.0),
        must_catch=1.0,
        effect="worse",
        patch=_protection,
        probe=_protection_probe,
    ),
    _fault(
        "calibration_steps",
        "calibration steps",
        "calibration",
        ("int8_w8a8",),
        description="Calibration observes only the first 1 - severity of the denoising steps.",
        severities=(0.25, 0.5, 0.75),
        must_catch=0.75,
        effect="different",
        patch=_calibration_steps,
        probe=_calibration_steps_probe,
    ),
    _fault(
        "guidance",
        "pipeline guidance",
        "pipeline",
        ALL_VARIANTS,
        description="Every guidance weight x (1 + severity), for every variant and the reference alike.",
        severities=(0.01, 0.05, 0.2),
        must_catch=0.01,
        effect="different",
        patch=_sampler(_guidance),
        probe=_sampler_probe,
    ),
    _fault(
        "steps",
        "pipeline steps",
        "pipeline",
        ALL_VARIANTS,
        description="severity (a count) fewer denoising steps, for every variant.",
        severities=(1.0, 2.0),
        must_catch=1.0,
        effect="worse",
        patch=_sampler(_steps),
        probe=_sampler_probe,
    ),
    _fault(
        "seed",
        "pipeline seed",
        "pipeline",
        ALL_VARIANTS,
        description="Every image seeded with prompt seed + severity: paired comparisons still pair, images move.",
        severities=(1.0,),
        must_catch=1.0,
        effect="different",
        patch=_sampler(_seed),
        probe=_sampler_probe,
    ),
    _fault(
        "ocr_case",
        "harness OCR normalisation",
        "harness",
        (),
        description="OCR normalisation keeps case and skips NFKC: 'OPEN' read as 'Open' stops matching.",
        severities=(1.0,),
        must_catch=1.0,
        effect="different",
        patch=_ocr_case,
        probe=_ocr_probe,
        scores=True,
    ),
    _fault(
        "fidelity_reference",
        "harness fidelity reference",
        "harness",
        (),
        description="PSNR/SSIM/LPIPS of the leading severity fraction of prompts compare the variant's image with "
        "itself instead of the reference's.",
        severities=(0.1, 0.5, 1.0),
        must_catch=0.1,
        effect="different",
        patch=_fidelity_reference,
        probe=_reference_probe,
        scores=True,
    ),
)

CATALOGUE: Mapping[str, Fault] = {fault.name: fault for fault in _FAULTS}
