"""The one-sample interval passes every argument through and has documented defaults; long id lists are shortened."""

import numpy as np
import pytest

from quantkit.stats import PairedBootstrap, mean_bootstrap
from quantkit.stats.bootstrap import name_some

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
