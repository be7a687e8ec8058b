"""Paired bootstrap confidence intervals of a mean per-prompt difference.

A variant and its reference are scored on the same prompts with the same seeds, so each prompt gives one paired
difference ``variant - reference``. Resampling prompts (not images) with ``scipy.stats.bootstrap(paired=True)``
keeps every pair together; the interval is BCa unless BCa is undefined (all differences equal, e.g. every OCR match
correct in both variants), in which case the percentile interval is used and ``PairedCI.fallback_reason`` says why.

One ``PairedBootstrap`` resamples once and then answers intervals at any confidence level or sidedness from the same
bootstrap distribution (``bootstrap_result=`` with ``n_resamples=0``), which is what the gates and the Holm
step-down need: tens of intervals per comparison for the price of one resampling.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from quantkit.errors import StatsError

METHODS = ("BCa", "percentile")
ALTERNATIVES = ("two-sided", "greater", "less")
# Resampled values held at once per sample (index array plus one gathered copy per sample): about 16 MB.
_BATCH_ELEMENTS = 2_000_000


@dataclasses.dataclass(frozen=True)
class PairedCI:
    """A confidence interval of ``mean(variant - reference)`` over paired prompts.

    With ``alternative="greater"`` the interval is ``[low, inf]`` (a one-sided lower bound), with ``"less"`` it is
    ``[-inf, high]``. ``reference == ""`` marks a one-sample interval of the variant's own mean (for metrics that
    already compare against the reference, such as LPIPS to the FP8 image). ``sd`` is the standard deviation of the
    per-prompt differences, the input to the power calculations.
    """

    metric: str
    variant: str
    reference: str
    mean_diff: float
    low: float
    high: float
    n: int
    method: str
    confidence: float
    seed: int
    fallback_reason: str | None = None
    alternative: str = "two-sided"
    n_resamples: int = 10_000
    standard_error: float = math.nan
    sd: float = math.nan
    category: str | None = None

    def includes(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        """``clip: int8_w8a8 - fp8 = -0.41 [95% CI -0.83, -0.02]``, the start of every gate message."""
        fmt = _number_format(self)
        where = f"{self.metric}[{self.category}]" if self.category is not None else self.metric
        if self.reference:
            lhs, value = f"{self.variant} - {self.reference}", format(self.mean_diff, "+" + fmt)
            low, high = _bound(self.low, "+" + fmt), _bound(self.high, "+" + fmt)
        else:
            lhs, value = self.variant, format(self.mean_diff, fmt)
            low, high = _bound(self.low, fmt), _bound(self.high, fmt)
        return f"{where}: {lhs} = {value} [{percent(self.confidence)} CI {low}, {high}]"

    def format_value(self, value: float, *, signed: bool | None = None) -> str:
        """``value`` with as many decimals as this interval's numbers need (signed for differences)."""
        signed = bool(self.reference) if signed is None else signed
        return _bound(value, ("+" if signed else "") + _number_format(self))


def percent(confidence: float) -> str:
    """``0.95 -> '95%'``, ``0.99833 -> '99.83%'``."""
    return f"{100 * confidence:.4g}%"


class PairedBootstrap:
    """One paired resampling of ``variant - reference`` that answers intervals at any level and sidedness."""

    def __init__(
        self,
        variant: Mapping[str, float],
        reference: Mapping[str, float] | None,
        *,
        metric: str = "",
        variant_name: str = "",
        reference_name: str = "",
        n_resamples: int = 10_000,
        seed: int = 0,
        category: str | None = None,
    ) -> None:
        """``reference=None`` bootstraps the variant's own mean (a one-sample interval)."""
        if n_resamples < 1:
            raise StatsError(f"n_resamples must be at least 1, got {n_resamples}")
        self.labels = {"metric": metric, "variant": variant_name or "variant", "category": category}
        self.labels["reference"] = "" if reference is None else (reference_name or "reference")
        self.prompt_ids, v, r = _pair(variant, reference, self.labels)
        self.n_resamples, self.seed = n_resamples, seed
        self.differences = v - r
        self._data = (v, r)
        self._intervals: dict[tuple[float, str, str], PairedCI] = {}
        self._result: Any = None  # scipy's BootstrapResult, made by the first interval asked for

    @property
    def n(self) -> int:
        return len(self.differences)

    def interval(self, confidence: float = 0.95, *, method: str = "BCa", alternative: str = "two-sided") -> PairedCI:
        """The interval at ``confidence`` from the stored bootstrap distribution (memoised)."""
        if not 0 < confidence < 1:
            raise StatsError(f"confidence must be strictly between 0 and 1, got {confidence}")
        if method not in METHODS:
            raise StatsError(f"unknown bootstrap method {method!r}; use one of {', '.join(METHODS)}")
        if alternative not in ALTERNATIVES:
            raise StatsError(f"unknown alternative {alternative!r}; use one of {', '.join(ALTERNATIVES)}")
        key = (confidence, method, alternative)
        if key not in self._intervals:
            self._intervals[key] = self._compute(confidence, method, alternative)
        return self._intervals[key]

    def _compute(self, confidence: float, method: str, alternative: str) -> PairedCI:
        fallback_reason = None
        low, high = self._scipy_interval(confidence, method, alternative)
        if method == "BCa" and (math.isnan(low) or math.isnan(high)):
            fallback_reason = _why_bca_undefined(self.differences)
            method = "percentile"
            low, high = self._scipy_interval(confidence, method, alternative)
        d = self.differences
        return PairedCI(
            metric=self.labels["metric"],
            variant=self.labels["variant"],
            reference=self.labels["reference"],
            mean_diff=float(np.mean(d)),
            low=low,
            high=high,
            n=self.n,
            method=method,
            confidence=confidence,
            seed=self.seed,
            fallback_reason=fallback_reason,
            alternative=alternative,
            n_resamples=self.n_resamples,
            standard_error=float(np.std(self._result.bootstrap_distribution, ddof=1)),
            sd=float(np.std(d, ddof=1)),
            category=self.labels["category"],
        )

    def _scipy_interval(self, confidence: float, method: str, alternative: str) -> tuple[float, float]:
        """Resample on the first call; every later call reuses that bootstrap distribution."""
        result = _scipy_bootstrap(
            self._data, self._result, self.n_resamples, self.seed, confidence, method, alternative
        )
        if self._result is None:
            self._result = result
        return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_bootstrap(
    variant: Mapping[str, float],
    reference: Mapping[str, float],
    *,
    metric: str = "",
    variant_name: str = "",
    reference_name: str = "",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "BCa",
    seed: int = 0,
    alternative: str = "two-sided",
) -> PairedCI:
    """CI of ``mean(variant[p] - reference[p])`` over prompt ids ``p``, resampling prompts with pairs kept together.

    Both mappings must hold the same prompt ids (an error names the missing ones), at least two, none NaN.
    """
    boot = PairedBootstrap(
        variant,
        reference,
        metric=metric,
        variant_name=variant_name,
        reference_name=reference_name,
        n_resamples=n_resamples,
        seed=seed,
    )
    return boot.interval(confidence, method=method, alternative=alternative)


def mean_bootstrap(
    scores: Mapping[str, float],
    *,
    metric: str = "",
    variant_name: str = "",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "BCa",
    seed: int = 0,
    alternative: str = "two-sided",
) -> PairedCI:
    """CI of the variant's own mean score: for metrics that are already differences from the reference (LPIPS)."""
    boot = PairedBootstrap(scores, None, metric=metric, variant_name=variant_name, n_resamples=n_resamples, seed=seed)
    return boot.interval(confidence, method=method, alternative=alternative)


def paired_bootstrap_rows(
    variant: np.ndarray,
    reference: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "BCa",
    seed: int = 0,
    alternative: str = "two-sided",
) -> list[PairedCI]:
    """The vectorised path: one interval per row of two ``(k, n)`` arrays whose columns are the same ``n`` prompts.

    All rows share one resampling of the prompt indices, so row ``i`` gets exactly the interval
    ``paired_bootstrap`` gives for it with the same seed, at the cost of one scipy call for all ``k`` rows.
    """
    v, r = np.asarray(variant, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if v.ndim != 2 or v.shape != r.shape:
        raise StatsError(f"rows must be two 2-D arrays of one shape (comparisons, prompts), got {v.shape}, {r.shape}")
    if v.shape[1] < 2:
        raise StatsError(f"a bootstrap needs at least 2 paired prompts, got {v.shape[1]}")
    bad = sorted({int(i) for i in np.nonzero(~(np.isfinite(v) & np.isfinite(r)))[0]})
    if bad:
        raise StatsError(f"rows {name_some([str(i) for i in bad])} hold non-finite (NaN/inf) scores")
    result = _scipy_bootstrap((v, r), None, n_resamples, seed, confidence, method, alternative)
    low, high = result.confidence_interval.low, result.confidence_interval.high
    undefined = np.isnan(low) | np.isnan(high)
    if method == "BCa" and undefined.any():
        fallback = _scipy_bootstrap((v, r), result, n_resamples, seed, confidence, "percentile", alternative)
        low = np.where(undefined, fallback.confidence_interval.low, low)
        high = np.where(undefined, fallback.confidence_interval.high, high)
    d = v - r
    return [
        PairedCI(
            metric="",
            variant="variant",
            reference="reference",
            mean_diff=float(np.mean(d[i])),
            low=float(low[i]),
            high=float(high[i]),
            n=v.shape[1],
            method="percentile" if undefined[i] else method,
            confidence=confidence,
            seed=seed,
            fallback_reason=_why_bca_undefined(d[i]) if undefined[i] else None,
            alternative=alternative,
            n_resamples=n_resamples,
            standard_error=float(np.std(result.bootstrap_distribution[i], ddof=1)),
            sd=float(np.std(d[i], ddof=1)),
        )
        for i in range(v.shape[0])
    ]


def _scipy_bootstrap(
    data: tuple[np.ndarray, np.ndarray],
    previous: Any,
    n_resamples: int,
    seed: int,
    confidence: float,
    method: str,
    alternative: str,
) -> Any:
    """``scipy.stats.bootstrap`` over prompts (the last axis), pairs kept together; reuses ``previous``'s
    distribution when given. BCa's degenerate-data warning is silenced: callers detect the NaN and fall back."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        return stats.bootstrap(
            data,
            _mean_difference,
            paired=True,
            vectorized=True,
            axis=-1,
            n_resamples=n_resamples if previous is None else 0,
            bootstrap_result=previous,
            batch=max(1, _BATCH_ELEMENTS // data[0].size),
            confidence_level=confidence,
            alternative=alternative,
            method=method,
            rng=np.random.default_rng(seed),
        )


def _mean_difference(variant: np.ndarray, reference: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(variant - reference, axis=axis)


def _why_bca_undefined(d: np.ndarray) -> str:
    if np.all(d == d[0]):
        return f"BCa is undefined because all {d.size} differences equal {d[0]:g}; used the percentile interval"
    return "BCa is undefined for this bootstrap distribution (degenerate resamples); used the percentile interval"


def _pair(
    variant: Mapping[str, float], reference: Mapping[str, float] | None, labels: Mapping[str, str | None]
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Align scores by prompt id; unpaired ids, NaN scores and fewer than two prompts are errors."""
    where = _where(labels)
    if reference is not None:
        only_variant = sorted(set(variant) - set(reference))
        only_reference = sorted(set(reference) - set(variant))
        if only_variant or only_reference:
            parts = []
            if only_reference:
                parts.append(f"missing from {labels['variant']}: {name_some(only_reference)}")
            if only_variant:
                parts.append(f"missing from {labels['reference']}: {name_some(only_variant)}")
            raise StatsError(
                f"{where}: prompt ids do not pair ({'; '.join(parts)}); score both variants on the same prompts"
            )
    ids = tuple(sorted(variant))
    if len(ids) < 2:
        raise StatsError(f"{where}: a bootstrap needs at least 2 paired prompts, got {len(ids)}")
    v = np.array([variant[p] for p in ids], dtype=np.float64)
    r = np.zeros_like(v) if reference is None else np.array([reference[p] for p in ids], dtype=np.float64)
    for name, values in ((labels["variant"], v), (labels["reference"], r)):
        bad = [p for p, x in zip(ids, values, strict=True) if not math.isfinite(x)]
        if bad:
            raise StatsError(
                f"{where}: {name} has non-finite (NaN/inf) scores for prompt(s) {name_some(bad)}; "
                "rescore them or drop those prompts from every variant"
            )
    return ids, v, r


def name_some(ids: list[str], shown: int = 5) -> str:
    """``'a, b, c, d, e and 12 more'``: enough ids to find the problem, not a wall of text."""
    head = ", ".join(ids[:shown])
    return head if len(ids) <= shown else f"{head} and {len(ids) - shown} more"


def _where(labels: Mapping[str, str | None]) -> str:
    metric = labels["metric"] or "scores"
    if labels["category"] is not None:
        metric = f"{metric}[{labels['category']}]"
    pair = f"{labels['variant']} - {labels['reference']}" if labels["reference"] else labels["variant"]
    return f"{metric} ({pair})"


def _number_format(ci: PairedCI) -> str:
    """Two significant digits of the largest finite number shown, one of the interval's width (so SSIM 0.9969
    [0.9967, ...] does not print as 1.00 [1.00, ...]), and at least two decimals."""
    finite = [abs(x) for x in (ci.mean_diff, ci.low, ci.high) if math.isfinite(x) and x != 0]
    scale = max(finite, default=1.0)
    bounds = [b for b in (ci.low, ci.high) if math.isfinite(b)]
    width = (max(bounds) - min(bounds)) if len(bounds) == 2 else abs(ci.mean_diff - bounds[0]) if bounds else 0.0
    digits = [offset - math.floor(math.log10(x)) for offset, x in ((1, scale), (0, width)) if x > 0]
    decimals = min(8, max(2, *digits))
    return f".{decimals}f"


def _bound(value: float, fmt: str) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, fmt)
