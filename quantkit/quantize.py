"""``quantize_(target, recipe, calibration=None)``: swap a model's linears for quantized layers, in place.

The flow is plan, build, swap: every per-layer decision (keep? protect? smoothing vector?) is made in one place,
:func:`decide_layers`, from the recipe's hooks (``protected``, ``keep_reason``, ``smoothing``); every quantized
layer is built by ``recipe.build`` before the first swap, so an error (a NaN weight, a bad recipe) leaves the model
untouched. No format is named here: a new variant brings its hooks in its recipe class. The returned
:class:`SkipReport` lists every tensor-holding layer: kept or quantized, why, and its bytes.

On a pipeline (anything with ``transformer`` and ``unconditional_transformer``, i.e. ``Ideogram4Pipeline``) both
transformers are quantized; the text encoder and the VAE stay as they are.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

import torch
from torch import nn

from quantkit.codecs.base import Packed, check_input
from quantkit.errors import CheckpointError, QuantkitError, RecipeError
from quantkit.nn import QuantizedLinear, layer_class
from quantkit.pipelines import BRANCHES
from quantkit.recipes import Recipe, known_variants

__all__ = ["BRANCHES", "Calibration", "LayerDecision", "ReportRow", "SkipReport", "decide_layers", "quantize_"]


class Calibration(Protocol):
    """What ``quantize_`` asks of calibration statistics (built in ``quantkit.calibrate``).

    Layer names are full names as in the skip report (``transformer.layers.3.feed_forward.w2`` on a pipeline).
    """

    def protected_layers(self, protect: int | Literal["auto"]) -> Iterable[str]:
        """The ``protect`` most fragile linears (or the automatically chosen set for ``"auto"``)."""
        ...

    def smoothing(self, layer: str, weight: torch.Tensor, alpha: float) -> torch.Tensor | None:
        """The SmoothQuant per-input-channel vector for ``layer`` at ``alpha``; ``None`` leaves it unsmoothed."""
        ...


@dataclasses.dataclass(frozen=True)
class LayerDecision:
    """What happens to one linear: quantized (with an optional smoothing vector) or kept, and why."""

    name: str
    quantize: bool
    reason: str
    smooth: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class ReportRow:
    layer: str
    shape: tuple[int, ...]
    action: Literal["quantized", "kept"]
    reason: str
    fmt: str
    bytes: int
    numel: int

    @property
    def bf16_bytes(self) -> int:
        return 2 * self.numel


@dataclasses.dataclass(frozen=True)
class SkipReport:
    """Every tensor-holding layer after ``quantize_``: what was quantized, what was kept and why, and the bytes."""

    recipe: Recipe
    rows: tuple[ReportRow, ...]

    @property
    def quantized(self) -> tuple[ReportRow, ...]:
        return tuple(r for r in self.rows if r.action == "quantized")

    @property
    def kept(self) -> tuple[ReportRow, ...]:
        return tuple(r for r in self.rows if r.action == "kept")

    @property
    def quantized_bytes(self) -> int:
        """Bytes of the quantized linears (packed weight, scales, bias, smoothing vector)."""
        return sum(r.bytes for r in self.quantized)

    @property
    def footprint_ratio(self) -> float:
        """bf16 bytes of the quantized linears over their quantized bytes (2.0 = half the size of bf16)."""
        return sum(r.bf16_bytes for r in self.quantized) / self.quantized_bytes

    def format_table(self) -> str:
        header = ("layer", "shape", "action", "format", "reason", "bytes")
        lines = [(r.layer, "x".join(map(str, r.shape)), r.action, r.fmt, r.reason, f"{r.bytes:,}") for r in self.rows]
        widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
        rule = "  ".join("-" * w for w in widths)
        body = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in (header, *lines)]
        summary = (
            f"{self.recipe.name}: {len(self.quantized)} quantized, {len(self.kept)} kept; quantized linears "
            f"{self.quantized_bytes:,} bytes ({self.footprint_ratio:.2f}x smaller than bf16)"
            if self.quantized
            else f"{self.recipe.name}: nothing quantized"
        )
        rules = [f"skip rule: {rule}" for rule in self.recipe.skip_rules()]
        return "\n".join(line.rstrip() for line in [*rules, body[0], rule, *body[1:], rule, summary])


def quantize_(target: object, recipe: Recipe, calibration: Calibration | None = None) -> SkipReport:
    """Quantize ``target`` (an ``nn.Module`` or an Ideogram 4 pipeline) in place per ``recipe``; report it."""
    if not isinstance(recipe, Recipe):
        raise RecipeError(
            f"quantize_ needs a Recipe (one of the variants {', '.join(known_variants())}), got {type(recipe).__name__}"
        )
    models = transformers_of(target)
    linears = {
        prefix + name: (name, module)
        for prefix, model in models.items()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }
    already = list(_quantized_layers(models))
    if already:
        raise QuantkitError(f"{already[0]} is already quantized; quantize_ needs an unquantized model")
    for full, (_, linear) in linears.items():
        check_input(linear.weight.detach(), recipe.format, full)
    decisions = decide_layers(linears, recipe, calibration)
    built = {d.name: recipe.build(linears[d.name][1], name=d.name, smooth=d.smooth) for d in decisions if d.quantize}
    for full, layer in built.items():
        _swap(models, full, layer)
    recipe.finish(models, calibration)
    return _report(models, recipe, {d.name: d for d in decisions})


def transformers_of(target: object) -> dict[str, nn.Module]:
    """The modules ``quantize_`` works on, keyed by the prefix their layer names get in reports and files."""
    if isinstance(target, nn.Module):
        return {"": target}
    branches = {name: getattr(target, name, None) for name in BRANCHES}
    if all(isinstance(m, nn.Module) for m in branches.values()):
        return {f"{name}.": module for name, module in branches.items()}
    raise QuantkitError(
        f"cannot quantize a {type(target).__name__}: pass an nn.Module or a pipeline with "
        f"{' and '.join(BRANCHES)} modules (Ideogram4Pipeline)"
    )


def decide_layers(
    linears: Mapping[str, tuple[str, nn.Linear]], recipe: Recipe, calibration: Calibration | None
) -> list[LayerDecision]:
    """The one place where each linear's fate is decided. ``linears``: full name -> (name in its model, layer)."""
    _check_names_exist(recipe.keep, linears, "keep")
    protect = recipe.protected(calibration)
    _check_names_exist(protect, linears, "protect")
    protected = {full for full, (name, _) in linears.items() if _match(protect, full, name)}
    decisions = []
    for full, (name, linear) in linears.items():
        reason = _keep_reason(full, name, linear, recipe, protected)
        if reason is not None:
            decisions.append(LayerDecision(full, quantize=False, reason=reason))
            continue
        smooth = recipe.smoothing(full, linear, calibration)
        decisions.append(LayerDecision(full, quantize=True, reason=recipe.quantized_reason(smooth), smooth=smooth))
    return decisions


def _keep_reason(full: str, name: str, linear: nn.Linear, recipe: Recipe, protected: set[str]) -> str | None:
    pattern = _match(recipe.keep, full, name)
    if pattern is not None:
        return f"listed in keep ({pattern})"
    if full in protected:
        return "protected: stays in its float dtype"
    return recipe.keep_reason(linear)


def _match(patterns: Sequence[str] | object, full: str, name: str) -> str | None:
    if not isinstance(patterns, tuple):
        return None
    return next((p for p in patterns if fnmatch.fnmatchcase(full, p) or fnmatch.fnmatchcase(name, p)), None)


def _check_names_exist(patterns: object, linears: Mapping[str, tuple[str, nn.Linear]], field: str) -> None:
    """A pattern that matches no linear is a typo that would silently quantize a layer meant to stay."""
    if not isinstance(patterns, tuple):
        return
    for pattern in patterns:
        if not any(_match((pattern,), full, name) for full, (name, _) in linears.items()):
            examples = ", ".join(list(linears)[:4])
            raise RecipeError(f"{field}: {pattern!r} matches no linear layer (names look like: {examples}, ...)")


def _swap(models: Mapping[str, nn.Module], full: str, layer: nn.Module) -> None:
    prefix = next(p for p in sorted(models, key=len, reverse=True) if full.startswith(p))
    parent_name, _, child = full[len(prefix) :].rpartition(".")
    models[prefix].get_submodule(parent_name).register_module(child, layer)


def _quantized_layers(models: Mapping[str, nn.Module]) -> dict[str, tuple[str, QuantizedLinear]]:
    return {
        prefix + name: (name, module)
        for prefix, model in models.items()
        for name, module in model.named_modules()
        if isinstance(module, QuantizedLinear)
    }


def _report(models: Mapping[str, nn.Module], recipe: Recipe, decisions: Mapping[str, LayerDecision]) -> SkipReport:
    rows = []
    for prefix, model in models.items():
        for name, module in model.named_modules():
            full = prefix + name
            if isinstance(module, QuantizedLinear):
                numel = module.out_features * module.in_features + (0 if module.bias is None else module.out_features)
                shape = (module.out_features, module.in_features)
                rows.append(
                    ReportRow(full, shape, "quantized", decisions[full].reason, module.fmt, module.nbytes, numel)
                )
                continue
            params = list(module.parameters(recurse=False))
            if not params:
                continue
            reason = decisions[full].reason if full in decisions else _non_linear_reason(module, params)
            weight = params[0]
            rows.append(
                ReportRow(
                    full,
                    tuple(weight.shape),
                    "kept",
                    reason,
                    str(weight.dtype).removeprefix("torch."),
                    sum(p.numel() * p.element_size() for p in params),
                    sum(p.numel() for p in params),
                )
            )
    return SkipReport(recipe, tuple(rows))


def _non_linear_reason(module: nn.Module, params: list[torch.Tensor]) -> str:
    if isinstance(module, nn.Embedding):
        return "embedding"
    if "norm" in type(module).__name__.lower():
        return "norm"
    if all(p.dim() == 1 for p in params):
        return "1-D tensor"
    return f"not a linear ({type(module).__name__})"


@dataclasses.dataclass(frozen=True)
class PackedLoad:
    """Checkpoint tensors checked against a model and ready to install: nothing in the model has changed yet."""

    model: nn.Module
    layers: dict[str, QuantizedLinear]
    plain: dict[str, torch.Tensor]

    def apply(self) -> list[str]:
        """Swap in the quantized layers and copy the plain tensors; return the installed layers' names."""
        for name, layer in self.layers.items():
            _swap({"": self.model}, name, layer)
        state = self.model.state_dict(keep_vars=True)
        with torch.no_grad():
            for key, value in self.plain.items():
                state[key].copy_(value)
        return list(self.layers)


def load_packed_into(
    model: nn.Module, tensors: Mapping[str, Packed | torch.Tensor], *, strict: bool = True
) -> list[str]:
    """Install checkpoint tensors into ``model``: each ``<layer>.weight`` that is ``Packed`` replaces that linear
    with the layer for its format (bias from ``<layer>.bias``, SmoothQuant vector from ``<layer>.smooth``); plain
    tensors are copied into the matching parameter or buffer. Returns the names of the installed layers.

    ``strict``: every model tensor must be given. Every check runs before the model is touched; a bad checkpoint
    raises :class:`CheckpointError` naming the offending key and leaves the model as it was.
    """
    return plan_packed_load(model, tensors, strict=strict).apply()


def plan_packed_load(
    model: nn.Module, tensors: Mapping[str, Packed | torch.Tensor], *, strict: bool = True
) -> PackedLoad:
    """Check ``tensors`` against ``model`` and build the quantized layers, without changing the model."""
    for key, value in tensors.items():
        if isinstance(value, Packed) and not key.endswith(".weight"):
            raise CheckpointError(f"{key}: a packed tensor must be a linear's weight (<layer>.weight)")
    packed = {key.removesuffix(".weight"): p for key, p in tensors.items() if isinstance(p, Packed)}
    layers = {name: _packed_layer(model, name, weight, tensors, strict) for name, weight in packed.items()}
    consumed = {f"{name}.{suffix}" for name in layers for suffix in ("weight", "bias", "smooth")}
    plain = {k: v for k, v in tensors.items() if k not in consumed}
    state = {k: v for k, v in model.state_dict().items() if k.rpartition(".")[0] not in layers}
    unexpected = sorted(set(plain) - set(state))
    if unexpected:
        raise CheckpointError(f"checkpoint tensors match nothing in {type(model).__name__}: {unexpected[:5]}")
    for key, value in plain.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(state[key].shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckpointError(f"{key}: checkpoint has {shape}, model expects {tuple(state[key].shape)}")
    missing = sorted(set(state) - set(plain))
    if strict and missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensor(s) the model needs: {missing[:5]}")
    return PackedLoad(model, layers, plain)


def _packed_layer(
    model: nn.Module, name: str, weight: Packed, tensors: Mapping[str, Packed | torch.Tensor], strict: bool
) -> QuantizedLinear:
    current = _submodule(model, name)
    if not isinstance(current, nn.Linear | QuantizedLinear):
        raise CheckpointError(f"{name}: checkpoint has a packed weight but the model's layer is a {type(current)}")
    expected = (current.out_features, current.in_features)
    if tuple(weight.shape) != expected:
        raise CheckpointError(f"{name}.weight: checkpoint shape {weight.shape} != model shape {expected}")
    bias, smooth = tensors.get(f"{name}.bias"), tensors.get(f"{name}.smooth")
    if strict and (bias is None) != (current.bias is None):
        raise CheckpointError(f"{name}.bias: {'missing from the checkpoint' if bias is None else 'unexpected'}")
    cls = layer_class(weight.fmt)
    if smooth is not None and not cls.SMOOTHED:
        raise CheckpointError(f"{name}.smooth: only int8 layers take a smoothing vector, this one is {weight.fmt}")
    device = _device_of(current)
    # A checkpoint may store the bias wider than the model keeps it (GGUF files keep 1-D tensors in F32).
    if bias is not None:
        bias = bias.to(device, bias.dtype if current.bias is None else current.bias.dtype, copy=True)
    options = {"smooth": smooth.to(device)} if smooth is not None else {}
    return cls(weight.to(device), bias, **options)


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise CheckpointError(f"{name}: checkpoint layer has no counterpart in {type(model).__name__}") from exc


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter(module.buffers()), None) if isinstance(module, QuantizedLinear) else module.weight
    return torch.device("cpu") if tensor is None else tensor.device
