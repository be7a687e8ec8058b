"""SmoothQuant: move activation outliers into the weights, ``X W^T = (X / s) (W * s)^T``, before int8 rounding.

``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` per input channel ``j`` (floored, as in mit-han-lab's ``smooth.py``).
The weights are multiplied by ``s`` in place. The activations' ``1/s`` is folded into whatever produces them when
the graph allows, so it costs nothing at run time:

* an RMSNorm's weight (``attention_norm1 -> to_q/to_k/to_v``, ``ffn_norm1 -> w1/w3``, ``llm_cond_norm ->
  llm_cond_proj``). The AdaLN modulation multiplies the normed activations per channel (``norm(x) * scale_msa``),
  and per-channel products commute, so dividing the norm weight by ``s`` divides the linear's input by ``s`` exactly;
* the rows (and bias) of a linear whose output feeds only this linear, up to a per-channel product: the SwiGLU
  ``w2(silu(w1 x) * w3 x)`` takes ``1/s`` on ``w3``'s rows, ``adaln_proj(mlp_out(...))`` on ``mlp_out``'s rows.
  Scaling a row does not change its per-row int8/fp8 codes, only its scale.

Everything else (``to_out.0``, ``adaln_modulation``, the embedders, ``final_layer.linear``) gets ``1/s`` applied to
its input at run time (``W8A8Linear``'s ``smooth`` vector). Linears that share an input share one ``s``, with the
weight maximum taken over all of them, so the shared fold stays valid.

Two entry points: ``smooth_`` transforms a float model (the exact-identity reference); ``quantize_`` builds
``W8A8Linear`` layers with run-time ``smooth`` vectors from ``CalibrationStats.smoothing`` and then calls
``fold_runtime_smoothing_`` to move them into the graph where every reader of the input agrees.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from quantkit.errors import QuantkitError
from quantkit.nn.base import QuantizedLinear
from quantkit.nn.w8a8 import W8A8Linear

if TYPE_CHECKING:
    from quantkit.calibrate.stats import LayerStats

DEFAULT_FLOOR = 1e-5

# (pattern over diffusers Ideogram4 names, fold target with \1 = block index, kind). Linears sharing a fold target
# form one group with one smoothing vector.
_FOLDS: tuple[tuple[str, str, str], ...] = (
    (r"layers\.(\d+)\.attention\.to_[qkv]", r"layers.\1.attention_norm1", "norm"),
    (r"layers\.(\d+)\.feed_forward\.w[13]", r"layers.\1.ffn_norm1", "norm"),
    (r"layers\.(\d+)\.feed_forward\.w2", r"layers.\1.feed_forward.w3", "rows"),
    (r"llm_cond_proj", "llm_cond_norm", "norm"),
    (r"adaln_proj", "t_embedding.mlp_out", "rows"),
)


@dataclasses.dataclass(frozen=True)
class SmoothGroup:
    """Linears that read the same input, and where their ``1/s`` goes: a module (``norm``/``rows``) or run time."""

    layers: tuple[str, ...]
    fold_into: str | None
    kind: str  # "norm" | "rows" | "runtime"


def smoothing_factors(
    act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float = 0.5, floor: float = DEFAULT_FLOOR
) -> torch.Tensor:
    """``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)``, floored; channels never seen active keep ``s_j = 1``."""
    if not 0.0 <= alpha <= 1.0:
        raise QuantkitError(f"SmoothQuant alpha must lie in [0, 1], got {alpha}")
    if act_absmax.shape != weight_absmax.shape:
        raise QuantkitError(
            f"activation statistics cover {tuple(act_absmax.shape)} channels but the weights have "
            f"{tuple(weight_absmax.shape)} input channels; the calibration belongs to another model"
        )
    act = act_absmax.double()
    weight = weight_absmax.double().clamp(min=floor)
    s = (act.clamp(min=floor).pow(alpha) / weight.pow(1.0 - alpha)).clamp(min=floor)
    return torch.where(act > 0, s, torch.ones_like(s)).float()


def smoothing_groups(model: nn.Module) -> list[SmoothGroup]:
    """Every (float or quantized) Linear of ``model`` in exactly one group, in module order; folds where Ideogram 4's
    graph allows."""
    modules = dict(model.named_modules())
    groups: dict[tuple[str | None, str], list[str]] = {}
    for name, module in modules.items():
        if not isinstance(module, nn.Linear | QuantizedLinear):
            continue
        target, kind = _fold_target(name, module, modules)
        key = (target, kind) if target is not None else (name, "runtime")
        groups.setdefault(key, []).append(name)
    return [
        SmoothGroup(tuple(layers), target if kind != "runtime" else None, kind)
        for (target, kind), layers in groups.items()
    ]


def smooth_(
    model: nn.Module,
    act_absmax: Mapping[str, torch.Tensor],
    alpha: float = 0.5,
    *,
    exclude: Collection[str] = (),
    floor: float = DEFAULT_FLOOR,
) -> dict[str, torch.Tensor]:
    """Smooth ``model`` in place; return the run-time vectors ``{layer: s}`` whose inputs must be divided by ``s``.

    ``act_absmax`` maps each Linear's name to its calibrated ``max|X_j|``. Layers in ``exclude`` (kept in high
    precision) are left alone unless they share a folded input with a smoothed layer, in which case they carry
    ``W * s`` too (exact in float). Without exclusions, the float model computes the same function afterwards.
    """
    runtime: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    for group in smoothing_groups(model):
        if all(name in exclude for name in group.layers):
            continue
        missing = [name for name in group.layers if name not in act_absmax]
        if missing:
            raise QuantkitError(f"no calibration statistics for layer {missing[0]!r}; calibrate this model first")
        linears = [modules[name] for name in group.layers]
        weight_absmax = torch.stack([m.weight.detach().abs().amax(dim=0).float() for m in linears]).amax(dim=0)
        act = torch.stack([act_absmax[name].float().to(weight_absmax.device) for name in group.layers]).amax(dim=0)
        s = smoothing_factors(act, weight_absmax, alpha, floor)
        for linear in linears:
            _scale_columns(linear, s)
        if group.kind == "norm":
            _divide_norm(modules[group.fold_into], s)
        elif group.kind == "rows":
            _divide_rows(modules[group.fold_into], s)
        else:
            (name,) = group.layers
            runtime[name] = s.cpu()
    return runtime


def fold_runtime_smoothing_(model: nn.Module) -> list[str]:
    """After quantization, move ``W8A8Linear`` run-time ``1/s`` into the module that produces their input.

    A group folds when every reader of the input is a ``W8A8Linear`` carrying the same ``s`` (a protected float
    reader would otherwise see ``x / s``). A norm's weight is divided by ``s``; a producing linear's output rows are
    (float weight rows and bias, or an int8/fp8 per-row ``weight_scale`` and bias: the codes do not change).
    Returns the names of the layers that no longer smooth at run time.
    """
    modules = dict(model.named_modules())
    folded: list[str] = []
    for group in smoothing_groups(model):
        members = [modules[name] for name in group.layers]
        s = getattr(members[0], "smooth", None)
        if group.kind == "runtime" or s is None:
            continue
        if not all(isinstance(m, W8A8Linear) and m.smooth is not None and torch.equal(m.smooth, s) for m in members):
            continue
        target = modules[group.fold_into]
        if group.kind == "norm":
            _divide_norm(target, s)
        elif isinstance(target, nn.Linear):
            _divide_rows(target, s)
        elif isinstance(target, QuantizedLinear) and target.fmt in ("int8", "fp8_e4m3"):
            _divide_scaled_rows(target, s)
        else:
            continue
        for member in members:
            member.smooth = None
        folded += group.layers
    return folded


@dataclasses.dataclass
class RuntimeSmoothing:
    """Float reference for run-time smoothing: forward pre-hooks that divide each layer's input by its ``s``."""

    model: nn.Module
    vectors: Mapping[str, torch.Tensor]

    def __enter__(self) -> RuntimeSmoothing:
        self._handles = [
            self.model.get_submodule(name).register_forward_pre_hook(_divide_input(s))
            for name, s in self.vectors.items()
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()


def _divide_input(s: torch.Tensor):
    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = args[0]
        return (x / s.to(device=x.device, dtype=x.dtype), *args[1:])

    return hook


def fold_target(name: str) -> tuple[str, str] | None:
    """Where the graph lets ``name``'s ``1/s`` go, by name alone: ``(module, "norm" | "rows")`` or ``None``."""
    for pattern, target_pattern, kind in _FOLDS:
        match = re.fullmatch(pattern, name)
        if match is not None:
            return match.expand(target_pattern), kind
    return None


def _fold_target(name: str, linear: nn.Linear, modules: Mapping[str, nn.Module]) -> tuple[str | None, str]:
    target = fold_target(name)
    if target is not None and _foldable(modules.get(target[0]), target[1], linear.in_features):
        return target
    return None, "runtime"


def _foldable(module: nn.Module | None, kind: str, channels: int) -> bool:
    if kind == "rows":
        return isinstance(module, nn.Linear | QuantizedLinear) and module.out_features == channels
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.shape == (channels,)


def _scale_columns(linear: nn.Linear, s: torch.Tensor) -> None:
    with torch.no_grad():
        w = linear.weight
        w.copy_((w.double() * s.double().to(w.device)[None, :]).to(w.dtype))


def _divide_rows(linear: nn.Linear, s: torch.Tensor) -> None:
    with torch.no_grad():
        for tensor, view in ((linear.weight, (-1, 1)), (linear.bias, (-1,))):
            if tensor is not None:
                tensor.copy_((tensor.double() / s.double().to(tensor.device).view(view)).to(tensor.dtype))


def _divide_scaled_rows(layer: QuantizedLinear, s: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight_scale.copy_(layer.weight_scale.double().div(s.double().to(layer.weight_scale.device)).float())
        if layer.bias is not None:
            bias = layer.bias
            bias.copy_((bias.double() / s.double().to(bias.device)).to(bias.dtype))


def _divide_norm(norm: nn.Module, s: torch.Tensor) -> None:
    with torch.no_grad():
        for tensor in (norm.weight, getattr(norm, "bias", None)):
            if isinstance(tensor, torch.Tensor):
                tensor.copy_((tensor.double() / s.double().to(tensor.device)).to(tensor.dtype))


def act_scales(branch: Mapping[str, LayerStats]) -> dict[str, torch.Tensor]:
    """``{layer: max|X_j|}`` from one branch of ``CalibrationStats.branches``."""
    return {name: layer.act_absmax() for name, layer in branch.items()}
