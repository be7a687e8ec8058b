"""Contracts: the documented arithmetic of the quantized layers and of the text metric, checked on fixed inputs.

The codecs' golden bytes (:mod:`quantkit.codec_digests`) pin what each codec stores; these pin what runs around
it, where a fault can be real on every model yet too small on the tiny one for a fidelity gate to see: a W8A8
accumulator rounded through bfloat16 is a 2**-9 relative error in every output, and moved the tiny model's INT8
PSNR by 0.01 dB. Each layer type runs on a fixed weight (:func:`quantkit.codec_digests.probe_weight`), bias and
input (with outlier channels) and is compared with a float64 evaluation of its documented math; the text metric's
normalisation is checked on pairs whose answers its documentation states. ``quantkit sensitivity`` runs
:func:`check` in every profile run, before any image; a unit test runs it in the default suite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# Allowed max |layer - oracle| over max |oracle|: float32 products and sums over K = 512 terms stay below 1e-6 of
# the output's scale, a bfloat16 round trip anywhere is about 2e-3, a bias or scale off by a percent about 1e-2.
LAYER_TOLERANCE = 1e-5
TOKENS = 16


def _probe() -> tuple[nn.Linear, torch.Tensor]:
    """A Linear with the codec probe's weight and a seeded bias, and an input whose channels 3 and 200 are spiky."""
    from quantkit.codec_digests import probe_weight

    weight = probe_weight()
    generator = torch.Generator().manual_seed(1202)
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(torch.randn(weight.shape[0], generator=generator) * 0.1)
    x = torch.randn(TOKENS, weight.shape[1], generator=generator)
    x[:, [3, 200]] *= 30.0
    return linear, x


def _smooth(in_features: int) -> torch.Tensor:
    """A fixed SmoothQuant vector (positive, spread over two decades) so the smoothed path is checked too."""
    return torch.logspace(-1, 1, in_features, dtype=torch.float32)


def _weight_only_oracle(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x @ decode(W)^T + b`` in float64, decoding with the codec (whose bytes the golden digests pin)."""
    from quantkit import codecs

    weight = codecs.dequantize(layer.packed(), torch.float32).double()
    return x.double() @ weight.T + layer.bias.double()


def _w8a8_oracle(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """W8A8's documented math: rows / smooth, symmetric int8 per token (max|row| / 127, round half to even), an
    exact integer product with the stored int8 weight, rescaled per token and per channel, plus the bias."""
    rows = x.float() / layer.smooth
    scale = rows.abs().amax(dim=1) / 127
    codes = torch.round(rows / torch.where(scale > 0, scale, 1.0)[:, None]).clamp(-127, 127)
    acc = codes.double() @ layer.weight.double().T  # integers below 2**53: exact
    return acc * scale.double()[:, None] * layer.weight_scale.double()[None, :] + layer.bias.double()


def _layers() -> dict[str, tuple[Callable[[nn.Linear], nn.Module], Callable[[nn.Module, torch.Tensor], torch.Tensor]]]:
    from quantkit.nn.fp8 import FP8Linear
    from quantkit.nn.gguf import GGUFLinear
    from quantkit.nn.nf4 import NF4Linear
    from quantkit.nn.w8a8 import W8A8Linear

    return {
        "fp8": (FP8Linear.from_linear, _weight_only_oracle),
        "q4_k": (lambda lin: GGUFLinear.from_linear(lin, "q4_k"), _weight_only_oracle),
        "q8_0": (lambda lin: GGUFLinear.from_linear(lin, "q8_0"), _weight_only_oracle),
        "nf4": (NF4Linear.from_linear, _weight_only_oracle),
        "int8_w8a8": (
            lambda lin: W8A8Linear.from_linear(lin, smooth=_smooth(lin.in_features), kernel="exact_cpu"),
            _w8a8_oracle,
        ),
    }


def layer_errors() -> dict[str, float]:
    """layer -> max |layer(x) - oracle(x)| / max |oracle(x)| on the probe, in float32 on CPU."""
    linear, x = _probe()
    errors = {}
    with torch.no_grad():
        for name, (build, oracle) in _layers().items():
            layer = build(linear)
            expected = oracle(layer, x)
            errors[name] = float((layer(x).double() - expected).abs().max() / expected.abs().max())
    return errors


# (text, what normalise gives): NFKC folds ligatures and full-width forms, whitespace runs become one space, case is
# folded (OCR reads "OPEN" as "Open" as often as not, and a sign's case is not what the metric judges).
NORMALISED = (("OPEN", "open"), ("ﬁne  Print", "fine print"), ("\tＳＡＬＥ 50%\n", "sale 50%"), ("Straße", "strasse"))


def text_problems() -> list[str]:
    """The OCR normalisation and element matching against their documented answers."""
    from quantkit.metrics import ocr

    problems = [
        f"text normalise: normalise({text!r}) = {ocr.normalise(text)!r}, documented {expected!r}"
        for text, expected in NORMALISED
        if ocr.normalise(text) != expected
    ]
    (match,) = ocr.match_elements(ocr.normalise("GRAND Opening today"), ["grand opening"])
    if not match.exact:
        problems.append(f"text match:  'grand opening' in 'GRAND Opening today': ned {match.ned:.3f}, documented 0")
    return problems


def check() -> list[str]:
    """One line per broken contract (empty when every layer and the text metric compute what they document)."""
    problems = [
        f"layer {name}: output off its oracle by {error:.1e} of its scale (allowed {LAYER_TOLERANCE:.0e})"
        for name, error in layer_errors().items()
        if not error <= LAYER_TOLERANCE
    ]
    return problems + text_problems()
