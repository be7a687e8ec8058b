"""The paired bootstrap: pairs by prompt id, refuses what it cannot pair, covers the true difference 95% of the time."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from quantkit.errors import StatsError
from quantkit.stats import PairedBootstrap, mean_bootstrap, paired_bootstrap
from quantkit.stats.bootstrap import paired_bootstrap_rows


def scored(values, prefix="p"):
    return {f"{prefix}{i:04d}": float(v) for i, v in enumerate(values)}


def correlated_pair(n=60, shift=0.3, seed=0):
    rng = np.random.default_rng(seed)
    reference = rng.normal(30, 2, n)
    return scored(reference + shift + rng.normal(0, 1, n)), scored(reference)


def test_interval_is_scipy_paired_bca_of_the_mean_difference():
    variant, reference = correlated_pair()
    ci = paired_bootstrap(variant, reference, n_resamples=2000, seed=7)
    v, r = np.array(list(variant.values())), np.array(list(reference.values()))
    expected = stats.bootstrap(
        (v, r), lambda a, b, axis: np.mean(a - b, axis=axis), paired=True, vectorized=True, n_resamples=2000,
        rng=np.random.default_rng(7),
    ).confidence_interval  # fmt: skip
    assert (ci.low, ci.high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert ci.method == "BCa" and ci.fallback_reason is None
    assert ci.mean_diff == pytest.approx(np.mean(v - r))
    assert (ci.n, ci.confidence, ci.seed, ci.n_resamples) == (60, 0.95, 7, 2000)


def test_pairs_by_prompt_id_not_by_insertion_order():
    variant, reference = correlated_pair()
    shuffled = dict(reversed(list(reference.items())))
    assert paired_bootstrap(variant, shuffled, n_resamples=500) == paired_bootstrap(variant, reference, n_resamples=500)


def test_same_seed_gives_same_interval_and_other_seed_a_different_one():
    variant, reference = correlated_pair()
    a = paired_bootstrap(variant, reference, n_resamples=500, seed=1)
    assert a == paired_bootstrap(variant, reference, n_resamples=500, seed=1)
    assert a != paired_bootstrap(variant, reference, n_resamples=500, seed=2)


def test_unpaired_prompt_ids_are_an_error_naming_them():
    variant, reference = correlated_pair(n=20)
    del variant["p0010"]
    variant.update({f"extra{i}": 1.0 for i in range(8)})
    with pytest.raises(StatsError) as err:
        paired_bootstrap(variant, reference, metric="clip", variant_name="int8", reference_name="fp8")
    message = str(err.value)
    assert message.startswith("clip (int8 - fp8): prompt ids do not pair")
    assert "missing from int8: p0010;" in message
    assert "missing from fp8: extra0, extra1, extra2, extra3, extra4 and 3 more" in message


def test_nan_scores_are_an_error_naming_the_prompts():
    variant, reference = correlated_pair(n=10)
    variant["p0002"] = math.nan
    reference["p0005"] = math.inf
    with pytest.raises(StatsError, match=r"variant has non-finite .* p0002"):
        paired_bootstrap(variant, reference)
    variant["p0002"] = 1.0
    with pytest.raises(StatsError, match=r"reference has non-finite .* p0005"):
        paired_bootstrap(variant, reference)


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_prompts_is_an_error(n):
    with pytest.raises(StatsError, match=f"at least 2 paired prompts, got {n}"):
        paired_bootstrap(scored([1.0] * n), scored([0.5] * n))


def test_constant_differences_fall_back_to_percentile_and_say_why():
    ci = paired_bootstrap(scored([1.0] * 30), scored([0.0] * 30), n_resamples=500)
    assert ci.method == "percentile"
    assert "all 30 differences equal 1" in ci.fallback_reason
    assert (ci.low, ci.mean_diff, ci.high) == (1.0, 1.0, 1.0)
    assert ci.sd == 0.0


def test_one_sided_intervals_are_open_on_the_other_side_and_tighter():
    variant, reference = correlated_pair()
    boot = PairedBootstrap(variant, reference, n_resamples=2000)
    two = boot.interval(0.95)
    greater, less = boot.interval(0.95, alternative="greater"), boot.interval(0.95, alternative="less")
    assert greater.high == math.inf and two.low < greater.low < two.mean_diff
    assert less.low == -math.inf and two.mean_diff < less.high < two.high
    assert greater.low == pytest.approx(boot.interval(0.90).low)


def test_higher_confidence_gives_a_nested_wider_interval():
    variant, reference = correlated_pair()
    boot = PairedBootstrap(variant, reference, n_resamples=2000)
    narrow, wide = boot.interval(0.90), boot.interval(0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_mean_bootstrap_bounds_the_variants_own_mean():
    lpips = scored(np.random.default_rng(3).gamma(4, 0.05, 80))
    ci = mean_bootstrap(lpips, metric="lpips", variant_name="int8", n_resamples=1000)
    assert ci.reference == "" and ci.mean_diff == pytest.approx(np.mean(list(lpips.values())))
    assert ci.low < ci.mean_diff < ci.high
    assert ci.describe().startswith("lpips: int8 = 0.")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": 1.0}, "confidence must be strictly between 0 and 1"),
        ({"method": "bca"}, "unknown bootstrap method 'bca'"),
        ({"alternative": "two_sided"}, "unknown alternative"),
        ({"n_resamples": 0}, "n_resamples must be at least 1"),
    ],
)
def test_bad_options_are_errors(kwargs, match):
    variant, reference = correlated_pair(n=5)
    with pytest.raises(StatsError, match=match):
        paired_bootstrap(variant, reference, **kwargs)


def test_rows_path_gives_each_row_the_interval_of_the_mapping_path():
    rng = np.random.default_rng(11)
    v, r = rng.normal(size=(4, 37)), rng.normal(size=(4, 37))
    v[2] = r[2] + 0.25  # a degenerate row falls back on its own
    rows = paired_bootstrap_rows(v, r, n_resamples=999, seed=5)
    for i, row in enumerate(rows):
        one = paired_bootstrap(scored(v[i]), scored(r[i]), n_resamples=999, seed=5)
        assert (row.low, row.high, row.mean_diff) == pytest.approx((one.low, one.high, one.mean_diff), rel=1e-12)
        assert (row.method, row.fallback_reason) == (one.method, one.fallback_reason)
    assert rows[2].method == "percentile"


def test_rows_path_rejects_non_finite_rows():
    v = np.zeros((3, 5))
    v[1, 2] = math.nan
    with pytest.raises(StatsError, match="rows 1 hold non-finite"):
        paired_bootstrap_rows(v, np.zeros((3, 5)))


finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
varied_pairs = st.lists(st.tuples(finite, finite), min_size=3, max_size=30).filter(
    lambda pairs: len({a - b for a, b in pairs}) > 1
)


# Eighths are exact in binary, so shifted differences are bit-identical: BCa's bias correction counts resampled means
# equal to the estimate, and a rounding error of 1e-15 could flip such a tie on general floats.
eighths = st.integers(-800, 800).map(lambda k: k / 8)
varied_eighths = st.lists(st.tuples(eighths, eighths), min_size=3, max_size=30).filter(
    lambda pairs: len({a - b for a, b in pairs}) > 1
)


@given(values=varied_eighths, shift=eighths)
def test_shifting_both_samples_by_a_constant_leaves_the_interval_unchanged(values, shift):
    v, r = zip(*values, strict=True)
    base = paired_bootstrap(scored(v), scored(r), n_resamples=300)
    moved = paired_bootstrap(scored(np.add(v, shift)), scored(np.add(r, shift)), n_resamples=300)
    assert (moved.low, moved.mean_diff, moved.high) == (base.low, base.mean_diff, base.high)


@given(values=varied_pairs, shift=st.floats(-50, 50))
def test_shifting_general_floats_moves_the_percentile_interval_only_by_rounding(values, shift):
    v, r = zip(*values, strict=True)
    base = paired_bootstrap(scored(v), scored(r), n_resamples=300, method="percentile")
    moved = paired_bootstrap(scored(np.add(v, shift)), scored(np.add(r, shift)), n_resamples=300, method="percentile")
    scale = 1e-9 * (1 + max(map(abs, v + r)) + abs(shift))
    assert moved.low == pytest.approx(base.low, abs=scale) and moved.high == pytest.approx(base.high, abs=scale)


@given(values=varied_pairs)
def test_swapping_variant_and_reference_negates_the_interval(values):
    v, r = zip(*values, strict=True)
    forward = paired_bootstrap(scored(v), scored(r), n_resamples=300)
    backward = paired_bootstrap(scored(r), scored(v), n_resamples=300)
    scale = 1e-9 * (1 + max(map(abs, v + r)))
    assert backward.mean_diff == pytest.approx(-forward.mean_diff, abs=scale)
    assert backward.low == pytest.approx(-forward.high, abs=scale)
    assert backward.high == pytest.approx(-forward.low, abs=scale)


def coverage(*, groups, rows, n, n_resamples, method, seed, noise="normal"):
    """Share of datasets (true mean difference 0.3) whose 95% interval covers 0.3; each group has its own seed."""
    rng = np.random.default_rng(seed)
    covered = []
    for group in range(groups):
        reference = rng.normal(30, 2, (rows, n))
        spread = rng.normal(0, 1, (rows, n)) if noise == "normal" else rng.exponential(1, (rows, n)) - 1
        cis = paired_bootstrap_rows(reference + 0.3 + spread, reference, n_resamples=n_resamples, method=method,
                                    seed=seed * 100_000 + group)  # fmt: skip
        covered += [ci.low <= 0.3 <= ci.high for ci in cis]
    return float(np.mean(covered))


def test_95_percent_intervals_cover_the_true_difference_about_95_percent_of_the_time():
    assert 0.93 <= coverage(groups=60, rows=20, n=150, n_resamples=999, method="BCa", seed=0) <= 0.97


@pytest.mark.slow
@pytest.mark.parametrize(("method", "noise"), [("BCa", "normal"), ("BCa", "skewed"), ("percentile", "normal")])
def test_coverage_holds_tightly_on_many_larger_benchmarks(method, noise):
    assert 0.935 <= coverage(groups=200, rows=20, n=200, n_resamples=999, method=method, seed=1, noise=noise) <= 0.965
