"""Activation statistics of every Linear, per branch and per denoising step, recorded by forward hooks.

SmoothQuant needs each layer's per-input-channel ``max|X_j|``; fragility ranking needs to know how spiky those
activations get at each step and how much error naive W8A8 (per-token int8 activations, per-row int8 weights) adds
to the layer's output. One calibration run records all of it, so the expensive pipeline run happens once and the
statistics are saved and reused.

The two CFG branches are separate models that see different inputs (the unconditional one sees no text), so every
statistic is kept per branch. The step index of a call is the number of forward calls the branch's root module has
received in the current run (``new_run()`` starts the next prompt at step 0), or the value given to ``set_step``
when a sampler callback knows it better.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from quantkit.atomic import write_bytes
from quantkit.calibrate.fragility import Protect, rank_fragility, select_protected
from quantkit.calibrate.smoothquant import fold_target, smoothing_factors
from quantkit.codecs import dequantize, quantize
from quantkit.errors import CheckpointError, QuantkitError

FORMAT_NAME = "quantkit-calibration"
FORMAT_VERSION = "1"
_FIELDS = ("absmax", "sumsq", "tokens", "err_sq", "ref_sq", "weight_absmax")
_SEP = "::"


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """One Linear's statistics; the first dimension of every field is the denoising step.

    ``absmax`` and ``sumsq`` are ``[steps, in_features]`` (per input channel ``max|x|`` and ``sum x^2``), ``tokens``
    counts the rows seen per step, ``err_sq`` / ``ref_sq`` are per-step sums of the squared naive-W8A8 output error
    and of the squared float output. ``weight_absmax`` (``[in_features]``, per input channel ``max|W_j|``) records
    the weights the statistics were taken with: SmoothQuant needs it, and it tells a calibration of another model.
    """

    absmax: torch.Tensor
    sumsq: torch.Tensor
    tokens: torch.Tensor
    err_sq: torch.Tensor
    ref_sq: torch.Tensor
    weight_absmax: torch.Tensor

    @property
    def steps(self) -> int:
        return self.absmax.shape[0]

    @property
    def in_features(self) -> int:
        return self.absmax.shape[1]

    def act_absmax(self) -> torch.Tensor:
        """``max|X_j|`` over every step and token: SmoothQuant's activation scale."""
        return self.absmax.amax(dim=0)

    def channel_rms(self) -> torch.Tensor:
        """Per-step per-channel root mean square, ``[steps, in_features]``."""
        return (self.sumsq / self.tokens.clamp(min=1)[:, None]).sqrt()

    def relative_error(self) -> torch.Tensor:
        """Per-step ``||y_int8 - y|| / ||y||`` of this layer quantized alone (0 where the output was all zero)."""
        return torch.where(self.ref_sq > 0, (self.err_sq / self.ref_sq.clamp(min=1e-300)).sqrt(), 0.0)


@dataclasses.dataclass(frozen=True)
class CalibrationStats:
    """Statistics of every Linear of every branch: ``branches[branch][layer name] -> LayerStats``."""

    branches: dict[str, dict[str, LayerStats]]
    runs: int = 1

    def layer(self, branch: str, name: str) -> LayerStats:
        if branch not in self.branches:
            raise QuantkitError(
                f"calibration has no branch {branch!r} (it has {sorted(self.branches)}); "
                "calibrate with the same branch names the quantized target uses"
            )
        layers = self.branches[branch]
        if name not in layers:
            raise QuantkitError(f"calibration of branch {branch!r} has no statistics for layer {name!r}")
        return layers[name]

    def act_absmax(self, branch: str, name: str) -> torch.Tensor:
        return self.layer(branch, name).act_absmax()

    def steps(self, branch: str) -> int:
        return max((s.steps for s in self.branches[branch].values()), default=0)

    def for_branch(self, branch: str) -> CalibrationStats:
        """Only ``branch``: the calibration to pass when quantizing that transformer on its own."""
        self.layer(branch, next(iter(self.branches.get(branch, {"": None}))))
        return CalibrationStats({branch: self.branches[branch]}, runs=self.runs)

    # What ``quantize_`` asks of a calibration. Layer names are full names: ``branch.layer`` when several branches
    # are calibrated (a pipeline), the bare layer name for a single branch (one transformer).

    def protected_layers(self, protect: Protect) -> list[str]:
        """The fragility-ranked layers to keep in bf16, chosen per branch (``k`` / names / ``"auto"``)."""
        return [
            self._full_name(branch, name)
            for branch, ranking in rank_fragility(self).items()
            for name in select_protected(ranking, protect)
        ]

    def smoothing(self, layer: str, weight: torch.Tensor, alpha: float) -> torch.Tensor | None:
        """SmoothQuant's ``s`` for ``layer``; linears that share a foldable input share one ``s``.

        ``None`` where the layer never saw a nonzero activation (nothing to smooth).
        """
        branch, name = self._split(layer)
        stats = self.layer(branch, name)
        current = weight.detach().abs().amax(dim=0).float().cpu()
        if current.shape != stats.weight_absmax.shape or not torch.allclose(current, stats.weight_absmax, rtol=1e-2):
            raise QuantkitError(
                f"{layer}: the calibration was recorded with different weights; calibrate the model you quantize"
            )
        target = fold_target(name)
        group = [n for n in self.branches[branch] if target is not None and fold_target(n) == target] or [name]
        act = torch.stack([self.layer(branch, n).act_absmax() for n in group]).amax(dim=0)
        if not bool((act > 0).any()):
            return None
        weights = torch.stack([self.layer(branch, n).weight_absmax for n in group]).amax(dim=0)
        return smoothing_factors(act, weights, alpha)

    def _full_name(self, branch: str, name: str) -> str:
        return name if len(self.branches) == 1 else f"{branch}.{name}"

    def _split(self, layer: str) -> tuple[str, str]:
        if len(self.branches) == 1:
            return next(iter(self.branches)), layer
        branch, _, name = layer.partition(".")
        return branch, name

    def save(self, path: str | os.PathLike[str]) -> None:
        """One safetensors file; tensor keys are ``branch::layer::field``; the layout lives in the metadata."""
        write_bytes(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """The safetensors serialisation. Not byte-reproducible: safetensors sorts tensors by name but writes the
        metadata in hash-map order, so identify statistics by their inputs (``Study.calibration``), not by these."""
        tensors = {
            _SEP.join((branch, name, field)): getattr(stats, field).contiguous()
            for branch, layers in self.branches.items()
            for name, stats in layers.items()
            for field in _FIELDS
        }
        layout = {branch: sorted(layers) for branch, layers in self.branches.items()}
        metadata = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "runs": str(self.runs),
            "layout": json.dumps(layout, sort_keys=True),
        }
        return safetensors.torch.save(tensors, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationStats:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"calibration statistics {path} do not exist; record them with StatsCollector, save")
        try:
            with safetensors.safe_open(path, framework="pt") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != FORMAT_NAME:
                    raise CheckpointError(f"{path} is not a quantkit calibration file (metadata {metadata})")
                if metadata.get("version") != FORMAT_VERSION:
                    raise CheckpointError(
                        f"{path}: calibration format version {metadata.get('version')!r}, this quantkit reads "
                        f"{FORMAT_VERSION!r}; re-run the calibration"
                    )
                layout = json.loads(metadata["layout"])
                keys = set(handle.keys())
                branches: dict[str, dict[str, LayerStats]] = {}
                for branch, names in layout.items():
                    branches[branch] = {}
                    for name in names:
                        wanted = [_SEP.join((branch, name, field)) for field in _FIELDS]
                        missing = [key for key in wanted if key not in keys]
                        if missing:
                            raise CheckpointError(f"{path}: calibration file lacks {missing[0]!r}; re-run calibration")
                        fields = {field: handle.get_tensor(key) for field, key in zip(_FIELDS, wanted, strict=True)}
                        branches[branch][name] = LayerStats(**fields)
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises plain errors on truncated or corrupted files
            raise CheckpointError(f"cannot read calibration statistics {path}: {exc}") from exc
        return cls(branches, runs=int(metadata.get("runs", "1")))


def fake_quant_per_token(x: torch.Tensor, qmax: int = 127) -> torch.Tensor:
    """Symmetric dynamic int8 per row (token) of ``x``, quantized and dequantized: W8A8's activation path."""
    scale = x.abs().amax(dim=-1, keepdim=True) / qmax
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(x / safe).clamp_(-qmax, qmax) * scale


def naive_w8a8_output(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ W^T`` (no bias) with per-token int8 activations and per-row int8 weights, in float32."""
    w = dequantize(quantize(weight.detach().float(), "int8", name="calibration weight"))
    return F.linear(fake_quant_per_token(x.float()), w)


class _Accumulator:
    """Running per-step sums for one Linear; steps are appended as they first occur."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.in_features = weight.shape[1]
        self.weight_absmax = weight.detach().abs().amax(dim=0).float().cpu()
        self.per_step: dict[int, list[torch.Tensor]] = {}

    def add(self, step: int, x: torch.Tensor, weight: torch.Tensor, measure_error: bool) -> None:
        x = x.detach().reshape(-1, self.in_features).float()
        absmax = x.abs().amax(dim=0).cpu()
        sumsq = x.double().pow(2).sum(dim=0).cpu()
        err_sq = ref_sq = torch.zeros((), dtype=torch.float64)
        if measure_error:
            reference = F.linear(x, weight.detach().float())
            err_sq = (naive_w8a8_output(x, weight) - reference).double().pow(2).sum().cpu()
            ref_sq = reference.double().pow(2).sum().cpu()
        tokens = torch.tensor(x.shape[0], dtype=torch.int64)
        fields = (absmax, sumsq, tokens, err_sq, ref_sq)
        if step not in self.per_step:
            self.per_step[step] = list(fields)
            return
        old = self.per_step[step]
        self.per_step[step] = [
            torch.maximum(old[0], absmax),
            *(a + b for a, b in zip(old[1:], fields[1:], strict=True)),
        ]

    def result(self) -> LayerStats:
        steps = max(self.per_step, default=-1) + 1
        zeros = [
            torch.zeros(self.in_features),
            torch.zeros(self.in_features, dtype=torch.float64),
            torch.zeros((), dtype=torch.int64),
            torch.zeros((), dtype=torch.float64),
            torch.zeros((), dtype=torch.float64),
        ]
        rows = [self.per_step.get(step, zeros) for step in range(steps)]
        stacked = [torch.stack([row[i] for row in rows]) if rows else z[None][:0] for i, z in enumerate(zeros)]
        return LayerStats(*stacked, weight_absmax=self.weight_absmax)


class StatsCollector:
    """Context manager that hooks every ``nn.Linear`` of each branch and records its statistics per step.

    ``branches`` maps a branch name (the pipeline attribute, e.g. ``transformer`` / ``unconditional_transformer``)
    to its root module; a bare module is one branch named ``"transformer"``. ``measure_error`` adds the naive W8A8
    output error per layer (two extra matmuls per call), which fragility ranking needs.
    """

    def __init__(self, branches: Mapping[str, nn.Module] | nn.Module, *, measure_error: bool = True) -> None:
        self.branches = {"transformer": branches} if isinstance(branches, nn.Module) else dict(branches)
        self.measure_error = measure_error
        self._acc: dict[str, dict[str, _Accumulator]] = {}
        self._calls = dict.fromkeys(self.branches, 0)
        self._explicit_step: int | None = None
        self._runs = 1
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> StatsCollector:
        for branch, root in self.branches.items():
            linears = dict(_linears(root))
            if not linears:
                raise QuantkitError(f"branch {branch!r} ({type(root).__name__}) has no nn.Linear to calibrate")
            self._acc[branch] = {name: _Accumulator(m.weight) for name, m in linears.items()}
            self._handles.append(root.register_forward_pre_hook(self._count_call(branch)))
            for name, module in linears.items():
                self._handles.append(module.register_forward_hook(self._record(branch, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def new_run(self) -> None:
        """Start the next calibration prompt: step counting restarts at 0, statistics keep accumulating."""
        self._calls = dict.fromkeys(self.branches, 0)
        self._explicit_step = None
        self._runs += 1

    def set_step(self, step: int) -> None:
        """Take the step index from the sampler instead of counting calls (e.g. from a step callback)."""
        self._explicit_step = step

    def result(self) -> CalibrationStats:
        branches = {
            branch: {name: acc.result() for name, acc in layers.items()} for branch, layers in self._acc.items()
        }
        return CalibrationStats(branches, runs=self._runs)

    def _count_call(self, branch: str):
        def hook(module: nn.Module, args: object) -> None:
            self._calls[branch] += 1

        return hook

    def _record(self, branch: str, name: str):
        def hook(module: nn.Linear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            step = self._explicit_step if self._explicit_step is not None else self._calls[branch] - 1
            with torch.no_grad():
                self._acc[branch][name].add(max(step, 0), args[0], module.weight, self.measure_error)

        return hook


def _linears(root: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    for name, module in root.named_modules():
        if isinstance(module, nn.Linear):
            yield name, module
