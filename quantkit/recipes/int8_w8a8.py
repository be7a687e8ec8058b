"""The INT8 W8A8 variant: per-channel int8 weights, per-token dynamic int8 activations, SmoothQuant, protection."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal

from quantkit.errors import RecipeError
from quantkit.recipes.base import Recipe, choice, fail, integer, names
from quantkit.recipes.registry import VariantSpec, register_variant

if TYPE_CHECKING:
    import torch
    from torch import nn

    from quantkit.nn.base import QuantizedLinear
    from quantkit.nn.w8a8 import W8A8Linear
    from quantkit.quantize import Calibration

ACTIVATION_MODES = ("per_token_dynamic",)


@dataclasses.dataclass(frozen=True)
class Int8W8A8(Recipe):
    """Per-channel int8 weights times per-token dynamic int8 activations (the Transformer Lab build).

    ``alpha``: SmoothQuant migration strength, used only with calibration statistics (none: no smoothing).
    ``protect``: linears kept in bf16: explicit names/patterns, or ``k`` / ``"auto"`` (the k / the automatically
    chosen most fragile layers, which needs a calibration). The published build protected the 17 most fragile
    FFN down-projections (``feed_forward.w2``) per branch. ``kernel``: how ``W8A8Linear`` multiplies.
    ``min_in_features``: linears with ``in_features`` at or below it stay (torchao: int8 has no benefit there).
    """

    alpha: float = 0.5
    protect: int | tuple[str, ...] | Literal["auto"] = ()
    activation: Literal["per_token_dynamic"] = "per_token_dynamic"
    kernel: Literal["auto", "int_mm", "exact_cpu", "fake_quant"] = "auto"
    min_in_features: int = 16

    def __post_init__(self) -> None:
        from quantkit.nn.w8a8 import KERNELS

        super().__post_init__()
        kind = type(self).__name__
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or not 0.0 <= self.alpha <= 1.0:
            raise fail(kind, "alpha", "a number in [0, 1]", self.alpha)
        self._set("alpha", float(self.alpha))
        if isinstance(self.protect, int) and not isinstance(self.protect, bool):
            integer(kind, "protect", self.protect)
        elif self.protect != "auto":
            if not isinstance(self.protect, list | tuple):
                raise fail(kind, "protect", 'an integer k, "auto", or a list of module names', self.protect)
            self._set("protect", names(kind, "protect", self.protect) if self.protect else ())
        choice(kind, "activation", self.activation, ACTIVATION_MODES)
        choice(kind, "kernel", self.kernel, KERNELS)
        integer(kind, "min_in_features", self.min_in_features)

    @property
    def name(self) -> str:
        return "int8_w8a8"

    @property
    def format(self) -> str:
        return "int8"

    @property
    def needs_calibration(self) -> bool:
        """``protect=k`` and ``protect="auto"`` choose layers from calibration statistics."""
        return not isinstance(self.protect, tuple)

    def skip_rules(self) -> tuple[str, ...]:
        protect = f"protect={list(self.protect)}" if isinstance(self.protect, tuple) else f"protect={self.protect!r}"
        return (
            *super().skip_rules(),
            f"linears chosen by {protect} stay bf16",
            f"linears with in_features <= {self.min_in_features}",
        )

    def protected(self, calibration: Calibration | None) -> tuple[str, ...]:
        if isinstance(self.protect, tuple):
            return self.protect
        if calibration is None:
            raise RecipeError(
                f"Int8W8A8(protect={self.protect!r}) picks the most fragile layers from calibration "
                "statistics; pass calibration= to quantize_, or list the layers to protect by name "
                "(the published build protected FFN down-projections, '*.feed_forward.w2')"
            )
        return tuple(calibration.protected_layers(self.protect))

    def keep_reason(self, linear: nn.Linear) -> str | None:
        if linear.in_features <= self.min_in_features:
            return f"in_features {linear.in_features} <= {self.min_in_features}: int8 gains nothing"
        return None

    def smoothing(self, layer: str, linear: nn.Linear, calibration: Calibration | None) -> torch.Tensor | None:
        return None if calibration is None else calibration.smoothing(layer, linear.weight.detach(), self.alpha)

    def quantized_reason(self, smooth: torch.Tensor | None) -> str:
        return "quantized" if smooth is None else f"quantized, SmoothQuant alpha={self.alpha}"

    def build(self, linear: nn.Linear, *, name: str, smooth: torch.Tensor | None) -> W8A8Linear:
        from quantkit.nn.w8a8 import W8A8Linear

        return W8A8Linear.from_linear(linear, smooth=smooth, kernel=self.kernel, name=name)

    def packed_bytes(self, out_features: int, in_features: int) -> int:
        return out_features * in_features + 4 * out_features  # one byte per weight, a float32 scale per row

    def finish(self, models: Mapping[str, nn.Module], calibration: Calibration | None) -> None:
        """Smoothing vectors that could not be folded into a producer are applied at run time; fold those that can."""
        from quantkit.calibrate.smoothquant import fold_runtime_smoothing_

        if calibration is not None:
            for model in models.values():
                fold_runtime_smoothing_(model)

    def configure_loaded(self, layers: Iterable[QuantizedLinear]) -> None:
        from quantkit.nn.w8a8 import W8A8Linear

        for layer in layers:
            if isinstance(layer, W8A8Linear):
                layer.kernel = self.kernel


def published() -> Int8W8A8:
    """The study's INT8: SmoothQuant at alpha 0.5, the automatically chosen most fragile layers protected."""
    return Int8W8A8(alpha=0.5, protect="auto")


register_variant(
    VariantSpec(
        name="int8_w8a8",
        recipe=published,
        default=True,
        sources=("recipes/int8_w8a8.py", "codecs/int8.py", "nn/w8a8.py", "calibrate"),
    )
)
