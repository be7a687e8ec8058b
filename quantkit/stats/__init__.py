"""Paired bootstrap statistics and quality gates (numpy/scipy only; never imports torch).

``paired_bootstrap`` gives the CI of a variant's mean per-prompt difference from its reference; gates decide on
such intervals, direction-aware; ``evaluate`` runs a whole gate profile with a multiple-comparison adjustment and
power checks, returning one ``Verdict`` (with a one-line message) per gate.
"""

from quantkit.stats.bootstrap import PairedBootstrap, PairedCI, mean_bootstrap, paired_bootstrap
from quantkit.stats.evaluate import evaluate
from quantkit.stats.gates import (
    DIRECTIONS,
    GATE_KINDS,
    CILimit,
    Equivalent,
    Gate,
    IncludesZero,
    MeanLimit,
    NonInferior,
    Superior,
    Verdict,
    gate_from_dict,
)
from quantkit.stats.multiple import ADJUSTMENTS, Decision, adjust
from quantkit.stats.power import minimum_detectable_difference, required_prompts

__all__ = [
    "ADJUSTMENTS",
    "DIRECTIONS",
    "GATE_KINDS",
    "CILimit",
    "Decision",
    "Equivalent",
    "Gate",
    "IncludesZero",
    "MeanLimit",
    "NonInferior",
    "PairedBootstrap",
    "PairedCI",
    "Superior",
    "Verdict",
    "adjust",
    "evaluate",
    "gate_from_dict",
    "mean_bootstrap",
    "minimum_detectable_difference",
    "paired_bootstrap",
    "required_prompts",
]
