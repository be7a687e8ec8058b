"""A 10k-resample paired BCa interval over 300 prompts costs about what scipy's bootstrap of the differences does."""

import time

import numpy as np
from scipy import stats

from quantkit.stats import paired_bootstrap


def test_paired_bca_10k_resamples_300_prompts_stays_near_plain_scipy(benchmark):
    rng = np.random.default_rng(0)
    reference = rng.normal(30, 2, 300)
    variant = reference + rng.normal(-0.4, 1.5, 300)
    v = {f"p{i:03d}": x for i, x in enumerate(variant)}
    r = {f"p{i:03d}": x for i, x in enumerate(reference)}

    def plain_scipy():
        start = time.perf_counter()
        stats.bootstrap((variant - reference,), np.mean, n_resamples=10_000, rng=np.random.default_rng(0))
        return time.perf_counter() - start

    reference_s = min(plain_scipy() for _ in range(3))
    ci = benchmark(paired_bootstrap, v, r, n_resamples=10_000)
    ratio = benchmark.stats.stats.min / reference_s
    benchmark.extra_info.update(scipy_one_sample_s=reference_s, ratio=ratio)
    assert ci.method == "BCa" and ci.low < ci.mean_diff < ci.high
    assert ratio < 4, f"paired BCa took {ratio:.1f}x scipy's one-sample bootstrap of the differences"
