"""The one-sample interval passes every argument through and has documented defaults; long id lists are shortened."""

import dataclasses
import warnings

import numpy as np
import pytest

from quantkit.errors import StatsError
from quantkit.stats import PairedBootstrap, mean_bootstrap
from quantkit.stats.bootstrap import name_some, paired_bootstrap, paired_bootstrap_rows

SCORES = {f"p{i:02d}": float(x) for i, x in enumerate(np.random.default_rng(7).normal(0.2, 0.05, 40))}


def test_mean_bootstrap_defaults_to_a_two_sided_95_percent_bca_interval_with_seed_0_and_10000_resamples():
    ci = mean_bootstrap(SCORES)
    assert (ci.metric, ci.variant, ci.reference) == ("", "variant", "")
    assert (ci.confidence, ci.method, ci.alternative, ci.seed, ci.n_resamples) == (0.95, "BCa", "two-sided", 0, 10_000)
    assert ci == PairedBootstrap(SCORES, None).interval()


def test_mean_bootstrap_is_the_one_sample_paired_bootstrap_with_the_same_arguments():
    args = {"metric": "lpips", "variant_name": "nf4", "n_resamples": 500, "seed": 3}
    reading = {"method": "percentile", "alternative": "less"}
    ci = mean_bootstrap(SCORES, confidence=0.9, **args, **reading)
    assert ci == PairedBootstrap(SCORES, None, **args).interval(0.9, **reading)
    assert (ci.metric, ci.variant, ci.seed, ci.n_resamples, ci.confidence) == ("lpips", "nf4", 3, 500, 0.9)
    assert (ci.method, ci.alternative, ci.low) == ("percentile", "less", -np.inf)


@pytest.mark.parametrize(
    ("count", "shown"),
    [(4, "a, b, c, d"), (5, "a, b, c, d, e"), (6, "a, b, c, d, e and 1 more"), (9, "a, b, c, d, e and 4 more")],
)
def test_up_to_five_ids_are_named_and_the_rest_counted(count, shown):
    assert name_some(list("abcdefghi")[:count]) == shown


def test_the_fallback_reason_says_whether_all_differences_were_equal_or_the_resamples_degenerate():
    equal = PairedBootstrap({"a": 0.5, "b": 0.5, "c": 0.5}, None, n_resamples=100).interval()
    assert equal.fallback_reason == (
        "BCa is undefined because all 3 differences equal 0.5; used the percentile interval"
    )
    # One outlier among 50 prompts that none of three resamples happens to draw (found by trying seeds).
    one_outlier = {f"p{i:02d}": float(i == 49) for i in range(50)}
    degenerate = PairedBootstrap(one_outlier, None, n_resamples=3, seed=3).interval()
    assert degenerate.method == "percentile"
    assert degenerate.fallback_reason == (
        "BCa is undefined for this bootstrap distribution (degenerate resamples); used the percentile interval"
    )


def test_an_interval_includes_both_of_its_bounds():
    ci = mean_bootstrap(SCORES, n_resamples=200)
    assert ci.includes(ci.low) and ci.includes(ci.high)
    assert not ci.includes(ci.low - 1e-9) and not ci.includes(ci.high + 1e-9)


def _rows(k=2, n=12, seed=5):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (k, n)), rng.normal(0.3, 1.0, (k, n))


@pytest.mark.parametrize(("method", "alternative"), [("BCa", "two-sided"), ("percentile", "greater")])
def test_each_row_of_the_vectorised_path_is_the_interval_paired_bootstrap_gives_it(method, alternative):
    """Rows share one resampling, so row ``i`` is exactly ``paired_bootstrap`` of that row with the same seed (only
    the names differ: the rows path has none)."""
    v, r = _rows()
    kw = {"confidence": 0.9, "n_resamples": 300, "seed": 4, "method": method, "alternative": alternative}
    rows = paired_bootstrap_rows(v, r, **kw)
    assert len(rows) == 2
    ids = [f"p{j:02d}" for j in range(v.shape[1])]
    for i, ci in enumerate(rows):
        alone = paired_bootstrap(dict(zip(ids, v[i], strict=True)), dict(zip(ids, r[i], strict=True)), **kw)
        assert (ci.metric, ci.variant, ci.reference) == ("", "variant", "reference")
        same = dataclasses.replace(alone, variant="variant", reference="reference")
        numbers = ("mean_diff", "low", "high", "standard_error", "sd")
        assert dataclasses.replace(ci, **dict.fromkeys(numbers, 0.0)) == dataclasses.replace(
            same, **dict.fromkeys(numbers, 0.0)
        )
        assert [getattr(ci, f) for f in numbers] == pytest.approx([getattr(alone, f) for f in numbers], rel=1e-12)


def test_the_vectorised_path_needs_two_equal_2d_arrays_of_at_least_two_prompts():
    v, r = _rows(n=2)
    assert [ci.n for ci in paired_bootstrap_rows(v, r, n_resamples=50)] == [2, 2]
    with pytest.raises(StatsError, match=r"^rows must be two 2-D arrays of one shape .*, got \(2, 2\), \(1, 2\)$"):
        paired_bootstrap_rows(v, r[:1])
    with pytest.raises(StatsError, match=r"^rows must be two 2-D arrays of one shape .*, got \(2,\), \(2,\)$"):
        paired_bootstrap_rows(v[0], r[0])
    with pytest.raises(StatsError, match=r"^a bootstrap needs at least 2 paired prompts, got 1$"):
        paired_bootstrap_rows(v[:, :1], r[:, :1])


# One resample has no spread: numpy warns computing its standard error, which the test does not read.
@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_two_prompts_and_one_resample_are_enough_and_bad_levels_and_names_are_errors():
    two = {"a": 1.0, "b": 2.0}
    ci = paired_bootstrap(two, {"a": 0.0, "b": 0.5}, n_resamples=1)
    assert (ci.n, ci.n_resamples) == (2, 1)
    assert PairedBootstrap(two, None, n_resamples=1).interval(0.9).reference == ""  # one-sample: no reference
    with pytest.raises(StatsError, match=r"^confidence must be strictly between 0 and 1, got 0$"):
        paired_bootstrap(two, two, confidence=0)
    with pytest.raises(StatsError, match=r"use one of BCa, percentile$"):
        paired_bootstrap(two, two, method="normal")
    with pytest.raises(StatsError, match=r"use one of two-sided, greater, less$"):
        paired_bootstrap(two, two, alternative="both")


def test_pairing_errors_name_the_metric_the_category_and_the_fix():
    with pytest.raises(StatsError, match=r"^scores \(variant - reference\): prompt ids do not pair \(missing from"):
        paired_bootstrap({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0, "c": 3.0})
    with pytest.raises(StatsError, match=r"prompt\(s\) b; rescore them or drop those prompts from every variant$"):
        paired_bootstrap({"a": 1.0, "b": float("nan")}, {"a": 1.0, "b": 2.0}, metric="clip")
    with pytest.raises(StatsError, match=r"^clip\[text\] \(v\): a bootstrap needs at least 2 paired prompts, got 1$"):
        PairedBootstrap({"a": 1.0}, None, metric="clip", variant_name="v", category="text")


def test_defaults_are_ten_thousand_resamples_seed_zero_and_a_two_sided_interval():
    v, r = _rows(k=1)
    ids = [f"p{j:02d}" for j in range(v.shape[1])]
    (row,) = paired_bootstrap_rows(v, r)
    one = paired_bootstrap(dict(zip(ids, v[0], strict=True)), dict(zip(ids, r[0], strict=True)))
    for ci in (row, one):
        assert (ci.n_resamples, ci.seed, ci.alternative) == (10_000, 0, "two-sided")
    assert row.low == pytest.approx(one.low, rel=1e-12) and row.high == pytest.approx(one.high, rel=1e-12)


def test_integer_score_rows_are_differenced_as_numbers_not_wrapped():
    """Counts stored as uint8 (e.g. characters read correctly) must not wrap around when subtracted."""
    (ci,) = paired_bootstrap_rows(
        np.array([[0, 1, 0, 1]], np.uint8), np.array([[1, 1, 1, 1]], np.uint8), n_resamples=50
    )
    assert ci.mean_diff == -0.5 and ci.high <= 0.0


def test_a_one_sided_bca_interval_that_is_undefined_falls_back_quietly_to_the_percentile_interval():
    """With ``alternative="greater"`` only the lower BCa bound can be NaN (the upper is +inf): that alone must
    trigger the fallback, and the fallback raises no warnings."""
    v = np.array([[1.0, 1.0, 1.0, 1.0], [0.3, 1.2, -0.4, 0.9]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        constant, normal = paired_bootstrap_rows(v, np.zeros_like(v), n_resamples=100, alternative="greater")
    assert (constant.method, constant.low, constant.high) == ("percentile", 1.0, float("inf"))
    assert constant.fallback_reason.startswith("BCa is undefined because all 4 differences equal 1")
    assert normal.method == "BCa" and normal.fallback_reason is None


def test_a_reference_given_without_a_name_is_called_reference():
    ci = PairedBootstrap({"a": 1.0, "b": 2.0, "c": 4.0}, {"a": 0.5, "b": 1.0, "c": 1.0}, n_resamples=200).interval()
    assert ci.reference == "reference"


def test_a_second_interval_reuses_the_first_bootstrap_distribution_without_adding_resamples():
    """Asking for a percentile interval after the BCa one reads the same resamples: it equals the percentile
    interval of a fresh bootstrap with the same seed and count."""
    v, r = {p: float(i) ** 1.5 for i, p in enumerate("abcdefgh")}, {p: float(i) for i, p in enumerate("abcdefgh")}
    reused = PairedBootstrap(v, r, n_resamples=500, seed=3)
    reused.interval(0.9)
    fresh = PairedBootstrap(v, r, n_resamples=500, seed=3).interval(0.9, method="percentile")
    assert reused.interval(0.9, method="percentile") == fresh
