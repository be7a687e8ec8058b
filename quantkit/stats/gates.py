"""Quality gates: direction-aware decisions on a paired confidence interval, each with a one-line verdict.

Every statistical gate is a test at level ``alpha`` that reads one interval (``alpha`` comes from the run's
multiple-comparison adjustment, see :mod:`quantkit.stats.multiple`):

============== ============================================ =========================================== ===========
kind           passes when (direction ``higher``)            interval read                               H0 rejected
============== ============================================ =========================================== ===========
includes_zero  the CI contains 0 (the study's criterion)     two-sided, confidence ``1 - alpha``         on failure
superior       the lower bound is above 0                   one-sided lower bound, ``1 - alpha``         on pass
non_inferior   the lower bound is above ``-margin``         one-sided lower bound, ``1 - alpha``         on pass
equivalent     the CI lies inside ``(-margin, +margin)``    two-sided, ``1 - 2 alpha`` (TOST)            on pass
ci_limit       the lower bound is at least ``limit``        one-sided lower bound, ``1 - alpha``         on pass
mean_limit     the mean is at least ``limit``               none (a plain check; not in the family)      --
============== ============================================ =========================================== ===========

With ``direction = "lower"`` (LPIPS, edit distance) the worst plausible value is the *upper* bound, and every
comparison flips: non-inferior means upper bound below ``+margin``, a limit means upper bound at most ``limit``.
A one-sided ``1 - alpha`` bound is the matching bound of the two-sided ``1 - 2 alpha`` interval, so
``equivalent(margin)`` is exactly ``non_inferior(margin)`` in both directions (two one-sided tests).

A gate with ``reference`` compares the variant's per-prompt scores with the reference's; without one it bounds the
variant's own mean (LPIPS or SSIM against the reference image are already paired measurements).
``category`` restricts a gate to the prompts of one category, or ``"*"`` repeats it for each category.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from quantkit.errors import StatsError
from quantkit.stats.bootstrap import PairedCI
from quantkit.stats.multiple import LABELS

DIRECTIONS = ("higher", "lower")
EACH_CATEGORY = "*"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gate:
    """What every gate names: the metric, the compared variants, which way is better, which prompts."""

    kind: ClassVar[str]
    is_test: ClassVar[bool] = True  # part of the multiple-comparison family
    passes_on_rejection: ClassVar[bool] = True  # passing = rejecting the gate's null hypothesis
    two_sided: ClassVar[bool] = False  # reads both bounds of an interval

    metric: str
    variant: str
    reference: str | None = None
    direction: str | None = None  # None: taken from the score table's metric directions by ``evaluate``
    category: str | None = None

    def __post_init__(self) -> None:
        for name in ("metric", "variant"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise StatsError(f"{self.kind} gate needs a non-empty string {name!r}, got {getattr(self, name)!r}")
        for name in ("reference", "category"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise StatsError(f"{self.describe()}: {name!r} must be a non-empty string, got {value!r}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise StatsError(f"{self.describe()}: direction must be 'higher' or 'lower', got {self.direction!r}")

    def describe(self) -> str:
        """``clip int8_w8a8 - fp8 non_inferior(margin=0.5)``: names the gate in errors and test ids."""
        pair = f"{self.variant} - {self.reference}" if self.reference else self.variant
        where = f"{self.metric}[{self.category}]" if self.category else self.metric
        params = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self) if f.name in _EXTRA)
        return f"{where} {pair} {self.kind}" + (f"({params})" if params else "")

    # -- which interval the gate reads at test level alpha, and back ------------------------------------------------

    def interval_for(self, alpha: float) -> tuple[float, str]:
        """The (confidence, alternative) of the interval this gate reads when testing at level ``alpha``."""
        if self.two_sided:
            return 1 - alpha, "two-sided"
        return 1 - alpha, "greater" if self._higher else "less"

    def alpha_of(self, ci: PairedCI) -> float:
        """The test level at which reading ``ci`` decides this gate (a two-sided CI's bound is one-sided at half)."""
        miss = 1 - ci.confidence
        return miss if self.two_sided or ci.alternative != "two-sided" else miss / 2

    # -- deciding --------------------------------------------------------------------------------------------------

    def decide(self, ci: PairedCI) -> tuple[bool, str]:
        """(passed, the phrase saying why), e.g. ``(False, "excludes 0 (worse)")``."""
        raise NotImplementedError

    def rejects(self, ci: PairedCI) -> bool:
        """Whether reading ``ci`` rejects this gate's null hypothesis (what the Holm step-down counts)."""
        return self.decide(ci)[0] == self.passes_on_rejection

    def check(self, ci: PairedCI, *, adjustment: str = "none") -> Verdict:
        """The verdict on ``ci``; ``adjustment`` only names, in the message, how its level was chosen."""
        self._check_matches(ci)
        passed, phrase = self.decide(ci)
        method = ci.method if ci.fallback_reason is None else f"{ci.method}, BCa undefined"
        how = f"n={ci.n}, {method}" + (f", {LABELS[adjustment]}" if self.is_test else "")
        message = f"{ci.describe()} ({how}) {phrase}: gate {self.kind} {'passed' if passed else 'failed'}"
        return Verdict(
            passed=passed,
            message=message,
            gate=self,
            ci=ci,
            confidence=1 - self.alpha_of(ci) if self.is_test else None,
            adjustment=adjustment if self.is_test else "none",
        )

    # -- helpers ---------------------------------------------------------------------------------------------------

    @property
    def _higher(self) -> bool:
        if self.direction is None:
            raise StatsError(f"{self.describe()}: direction is not set; give 'higher' or 'lower'")
        return self.direction == "higher"

    def _worst(self, ci: PairedCI) -> tuple[str, float]:
        """The bound that is worst for the variant: the lower one when higher is better."""
        name, value = ("lower bound", ci.low) if self._higher else ("upper bound", ci.high)
        if math.isinf(value):
            raise StatsError(f"{self.describe()}: needs the {name} but the interval is one-sided the other way")
        return name, value

    def _check_matches(self, ci: PairedCI) -> None:
        wanted = (self.metric, self.variant, self.reference or "")
        if (ci.metric, ci.variant, ci.reference) != wanted:
            raise StatsError(
                f"{self.describe()}: was given the interval of {ci.metric} {ci.variant} - {ci.reference or '(none)'}"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class IncludesZero(Gate):
    """No detectable difference: the two-sided CI contains 0. ``margin`` (optional) is the smallest difference that
    matters; when the benchmark cannot detect a difference that small the verdict says it is underpowered."""

    kind: ClassVar[str] = "includes_zero"
    passes_on_rejection: ClassVar[bool] = False
    two_sided: ClassVar[bool] = True
    margin: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.margin is not None:
            _positive(self, "margin", self.margin)

    def decide(self, ci: PairedCI) -> tuple[bool, str]:
        if ci.includes(0.0):
            return True, "includes 0"
        worse = (ci.mean_diff < 0) == self._higher
        return False, f"excludes 0 ({'worse' if worse else 'better'})"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Superior(Gate):
    """The variant is better: the one-sided CI excludes 0 in the good direction."""

    kind: ClassVar[str] = "superior"

    def decide(self, ci: PairedCI) -> tuple[bool, str]:
        name, bound = self._worst(ci)
        passed = bound > 0 if self._higher else bound < 0
        sign = (">" if passed else "<=") if self._higher else ("<" if passed else ">=")
        return passed, f"{name} {ci.format_value(bound)} {sign} 0"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NonInferior(Gate):
    """The variant is at most ``margin`` worse: the one-sided bound clears ``-margin`` (``+margin`` for lower)."""

    kind: ClassVar[str] = "non_inferior"
    margin: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "margin", self.margin)

    def decide(self, ci: PairedCI) -> tuple[bool, str]:
        name, bound = self._worst(ci)
        threshold = -self.margin if self._higher else self.margin
        passed = bound > threshold if self._higher else bound < threshold
        sign = (">" if passed else "<=") if self._higher else ("<" if passed else ">=")
        return passed, f"{name} {ci.format_value(bound)} {sign} {ci.format_value(threshold, signed=True)} margin"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Equivalent(Gate):
    """No difference larger than ``margin`` either way: the ``1 - 2 alpha`` CI lies inside ``(-margin, +margin)``."""

    kind: ClassVar[str] = "equivalent"
    two_sided: ClassVar[bool] = True
    margin: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "margin", self.margin)

    def interval_for(self, alpha: float) -> tuple[float, str]:
        return 1 - 2 * alpha, "two-sided"

    def alpha_of(self, ci: PairedCI) -> float:
        return (1 - ci.confidence) / 2

    def decide(self, ci: PairedCI) -> tuple[bool, str]:
        if ci.alternative != "two-sided":
            raise StatsError(f"{self.describe()}: needs a two-sided interval, got a one-sided ({ci.alternative}) one")
        passed = -self.margin < ci.low and ci.high < self.margin
        within = "within" if passed else "not within"
        return passed, f"{within} ±{ci.format_value(self.margin, signed=False)}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class CILimit(Gate):
    """An absolute bound on the worst plausible value: e.g. LPIPS upper bound <= 0.26 (direction lower)."""

    kind: ClassVar[str] = "ci_limit"
    limit: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite(self, "limit", self.limit)

    def decide(self, ci: PairedCI) -> tuple[bool, str]:
        name, bound = self._worst(ci)
        passed = bound >= self.limit if self._higher else bound <= self.limit
        sign = (">=" if passed else "<") if self._higher else ("<=" if passed else ">")
        return passed, f"{name} {ci.format_value(bound)} {sign} {ci.format_value(self.limit)}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanLimit(Gate):
    """An absolute bound on the mean itself (no interval involved, so not part of the multiple-comparison family)."""

    kind: ClassVar[str] = "mean_limit"
    is_test: ClassVar[bool] = False
    two_sided: ClassVar[bool] = True  # shown with the two-sided interval at the run's nominal confidence
    limit: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite(self, "limit", self.limit)

    def decide(self, ci: PairedCI) -> tuple[bool, str]:
        mean = ci.mean_diff
        passed = mean >= self.limit if self._higher else mean <= self.limit
        sign = (">=" if passed else "<") if self._higher else ("<=" if passed else ">")
        return passed, f"mean {ci.format_value(mean)} {sign} {ci.format_value(self.limit)}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A gate's outcome. ``message`` is the one line a reviewer reads; the rest is for reports and tools.

    ``confidence`` is ``1 - alpha`` of the gate's test after the multiple-comparison adjustment (None for
    ``mean_limit``); ``ci.confidence`` is the level of the interval it read (``1 - 2 alpha`` for ``equivalent``).
    ``mdd`` is the minimum detectable difference of an ``includes_zero`` gate at that level. ``index`` is the
    position of the gate spec it came from among the gates given to :func:`quantkit.stats.evaluate` (a gate repeated
    per category gives several verdicts with the same index).
    """

    passed: bool
    message: str
    gate: Gate
    ci: PairedCI
    confidence: float | None
    adjustment: str
    underpowered: bool = False
    mdd: float | None = None
    index: int | None = None

    def __bool__(self) -> bool:
        return self.passed

    @property
    def status(self) -> str:
        """``passed`` or ``failed`` (a gate that could not be evaluated is a ``SkippedGate``, status ``skipped``)."""
        return "passed" if self.passed else "failed"


GATE_KINDS: dict[str, type[Gate]] = {
    cls.kind: cls for cls in (IncludesZero, Superior, NonInferior, Equivalent, CILimit, MeanLimit)
}
_EXTRA = ("margin", "limit")


def gate_from_dict(spec: Mapping[str, Any]) -> Gate:
    """A gate from plain data (a TOML table), e.g. ``{"metric": "clip", "variant": "int8_w8a8", "reference": "fp8",
    "kind": "non_inferior", "direction": "higher", "margin": 0.5}``. Unknown or misplaced fields are errors."""
    kind = spec.get("kind")
    if kind not in GATE_KINDS:
        raise StatsError(f"gate {dict(spec)!r}: kind must be one of {', '.join(GATE_KINDS)}, got {kind!r}")
    cls = GATE_KINDS[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(spec) - known - {"kind"})
    if unknown:
        raise StatsError(
            f"{kind} gate on {spec.get('metric', '?')}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"a {kind} gate takes {', '.join(sorted(known))}"
        )
    missing = sorted(f.name for f in dataclasses.fields(cls) if _required(f) and f.name not in spec)
    if missing:
        raise StatsError(f"{kind} gate on {spec.get('metric', '?')}: missing field(s) {', '.join(missing)}")
    return cls(**{k: v for k, v in spec.items() if k != "kind"})


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _positive(gate: Gate, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise StatsError(f"{gate.describe()}: {name} must be a positive number, got {value!r}")


def _finite(gate: Gate, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StatsError(f"{gate.describe()}: {name} must be a finite number, got {value!r}")
