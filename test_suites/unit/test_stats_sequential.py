"""Sequential gating: alpha spending over looks, stratified batches, early decisions, and the error rate it keeps.

The simulations draw normal per-prompt differences for one paired gate and run it look by look as a study would.
The false-rejection rate is measured at the least favourable null (the true difference exactly on the gate's
threshold); it must stay within alpha plus Monte Carlo error. The fast versions use few datasets and a looser
bound; the slow ones (``-m slow``) use 2,000 datasets and print the mean prompts used under null and under shifts
of 0.5 and 1 minimum detectable difference (MDD, quantkit.stats.power).
"""

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from quantkit.errors import StatsError
from quantkit.stats import minimum_detectable_difference
from quantkit.stats.bootstrap import PairedCI
from quantkit.stats.gates import gate_from_dict
from quantkit.stats.sequential import (
    SequentialGates,
    look_levels,
    simulate,
    spent,
    stratified_batches,
    t_interval,
)

NON_INFERIOR = {"metric": "clip", "variant": "v", "reference": "r", "kind": "non_inferior", "margin": 0.5}
INCLUDES_ZERO = {"metric": "clip", "variant": "v", "reference": "r", "kind": "includes_zero"}
HIGHER = {**NON_INFERIOR, "direction": "higher"}


def test_obrien_fleming_spending_spends_almost_nothing_early_and_all_of_alpha_at_the_end():
    assert spent(1.0, 0.05) == pytest.approx(0.05)
    assert spent(0.2, 0.05) < 1e-4
    assert spent(0.0, 0.05) == 0.0
    levels = look_levels([60, 120, 180, 240, 300], 0.05)
    assert sum(levels) == pytest.approx(0.05)
    assert levels == sorted(levels)  # O'Brien-Fleming: later looks spend more


def test_pocock_spending_spends_evenly():
    levels = look_levels([1, 2, 3, 4], 0.05, "pocock")
    assert sum(levels) == pytest.approx(0.05)
    assert levels[0] > 0.01


def test_bad_looks_and_spending_are_errors():
    with pytest.raises(StatsError, match="increasing"):
        look_levels([10, 10], 0.05)
    with pytest.raises(StatsError, match="unknown alpha spending"):
        spent(0.5, 0.05, "linear")


@dataclasses.dataclass
class Item:
    id: str
    category: str


def test_stratified_batches_put_every_category_in_every_batch():
    items = [Item(f"{c}{i}", c) for c in "abc" for i in range(7)]
    batches = stratified_batches(items, looks=3)
    assert len(batches) == 3
    assert all({item.category for item in batch} == {"a", "b", "c"} for batch in batches)
    assert sorted(i.id for b in batches for i in b) == sorted(i.id for i in items)
    # as many batches as the smallest category allows
    assert len(stratified_batches([*items, Item("d0", "d")], looks=3)) == 1


def test_stratified_batches_of_no_items_are_one_empty_batch():
    """With nothing to split there is a single look over nothing, not ``looks`` empty ones (nor an error)."""
    assert stratified_batches([], looks=3) == [[]]
    assert stratified_batches([]) == [[]]


def _scores(diffs):
    ids = [f"p{i}" for i in range(len(diffs))]
    return {"v": {"clip": dict(zip(ids, diffs, strict=True))}, "r": {"clip": dict.fromkeys(ids, 0.0)}}


def test_a_clear_failure_is_decided_at_the_first_look_and_says_so():
    diffs = list(np.random.default_rng(1).normal(-3.0, 0.3, 100))
    run = SequentialGates([HIGHER], [20, 40, 60, 80, 100])
    (verdict,) = run.look(_scores(diffs[:20]))
    assert run.done and not verdict.passed
    assert run.decided_at == {0: 20}
    assert "sequential look 1/5" in verdict.message and verdict.message.startswith("clip: v - r = ")


def test_an_unclear_gate_waits_for_the_last_look_and_gets_the_gate_s_own_verdict_there():
    diffs = list(np.random.default_rng(2).normal(-0.45, 1.0, 100))
    run = SequentialGates([HIGHER], [50, 100])
    assert run.look(_scores(diffs[:50])) == []
    assert not run.done
    (verdict,) = run.look(_scores(diffs))
    assert run.done and run.decided_at == {0: 100}
    assert verdict.passed == (verdict.ci.low > -0.5)


def test_undecided_is_every_gate_before_the_first_look_and_the_gates_still_open_after_it():
    """The merge gate scores only the variants that undecided gates still read, so a decided gate must leave the
    list and an open one stay (before any look: every gate of the profile, dicts turned into gates)."""
    clear = {**HIGHER, "variant": "w"}
    diffs = list(np.random.default_rng(2).normal(-0.45, 1.0, 100))
    table = _scores(diffs[:50])
    table["w"] = {"clip": {p: -3.0 + 0.1 * (i % 3) for i, p in enumerate(table["r"]["clip"])}}
    run = SequentialGates([HIGHER, clear], [50, 100])
    before = run.undecided()
    assert [(g.variant, g.reference, g.kind, g.margin) for g in before] == [
        ("v", "r", "non_inferior", 0.5),
        ("w", "r", "non_inferior", 0.5),
    ]
    (verdict,) = run.look(table)
    assert not verdict.passed and run.decided_at == {1: 50}
    assert run.undecided() == [run.expanded[0]]


def test_a_look_after_the_last_is_an_error():
    run = SequentialGates([HIGHER], [10])
    run.look(_scores([0.0, 0.1] * 5))
    with pytest.raises(StatsError, match="looks are done"):
        run.look(_scores([0.0, 0.1] * 5))


def _bound(alpha, runs, sigmas):
    return alpha + sigmas * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.mark.parametrize(
    ("gate", "truth", "false_rejection"),
    [
        (NON_INFERIOR, -0.5, lambda oc: oc.pass_rate),  # on the margin: passing is the false rejection
        (INCLUDES_ZERO, 0.0, lambda oc: 1 - oc.pass_rate),  # no difference: failing is the false rejection
    ],
)
def test_false_rejection_rate_within_alpha_fast(gate, truth, false_rejection):
    oc = simulate({**gate, "direction": "higher"}, true_difference=truth, sd=1.0, prompts=100, runs=200, seed=3)
    assert false_rejection(oc) <= _bound(0.05, 200, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gate", "truth", "false_rejection"),
    [
        (NON_INFERIOR, -0.5, lambda oc: oc.pass_rate),
        (INCLUDES_ZERO, 0.0, lambda oc: 1 - oc.pass_rate),
    ],
)
def test_false_rejection_rate_within_alpha_over_2000_null_datasets(gate, truth, false_rejection):
    oc = simulate({**gate, "direction": "higher"}, true_difference=truth, sd=1.0, prompts=300, runs=2000, seed=4)
    print(f"\n{gate['kind']}: false rejection {false_rejection(oc):.4f}, mean prompts {oc.mean_prompts:.1f} of 300")
    assert false_rejection(oc) <= _bound(0.05, 2000, 2)


@pytest.mark.slow
def test_prompts_used_under_null_and_under_shifts_of_half_and_one_mdd():
    """Non-inferiority of a variant, 300 prompts, 5 looks: the mean number of prompts falls as the truth moves from
    the margin (null) towards non-inferior by 0.5 and 1 MDD, and the pass rate rises towards the power."""
    mdd = minimum_detectable_difference(np.random.default_rng(5).normal(0, 1, 300), two_sided=False)
    gate = {**NON_INFERIOR, "direction": "higher"}
    found = {
        shift: simulate(gate, true_difference=-0.5 + shift * mdd, sd=1.0, prompts=300, runs=2000, seed=6)
        for shift in (0.0, 0.5, 1.0, 3.0)
    }
    for shift, oc in found.items():
        print(f"\nshift {shift} MDD: pass rate {oc.pass_rate:.3f}, mean prompts {oc.mean_prompts:.1f} of 300")
    assert found[0.0].pass_rate <= _bound(0.05, 2000, 2)
    assert found[0.0].mean_prompts >= found[0.5].mean_prompts >= found[1.0].mean_prompts > found[3.0].mean_prompts
    assert found[1.0].pass_rate > 0.5
    assert found[3.0].mean_prompts < 200


def test_spending_functions_at_the_edges_and_pocock_s_formula():
    """Nothing is spent before the first prompt; past the whole set the spent rate stays alpha (t is capped at 1);
    Pocock's function is ``alpha * ln(1 + (e - 1) t)``."""
    for kind in ("obrien_fleming", "pocock"):
        assert spent(-0.5, 0.05, kind) == 0.0
        assert spent(2.0, 0.05, kind) == pytest.approx(0.05)
    assert spent(0.5, 0.05, "pocock") == pytest.approx(0.05 * math.log(1 + (math.e - 1) * 0.5))
    assert spent(0.25, 0.1, "pocock") == pytest.approx(0.1 * math.log(1 + (math.e - 1) * 0.25))


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5])
def test_alpha_outside_zero_to_one_is_an_error(alpha):
    with pytest.raises(StatsError, match=f"^alpha must be strictly between 0 and 1, got {alpha}$"):
        spent(0.5, alpha)


def test_an_unknown_spending_names_the_known_ones():
    with pytest.raises(StatsError, match=r"^unknown alpha spending 'linear'; use one of obrien_fleming, pocock$"):
        spent(0.5, 0.05, "linear")


def test_a_run_spends_alpha_with_the_spending_function_it_names():
    run = SequentialGates([HIGHER], [10, 20, 30], alpha=0.1, spending="pocock")
    assert run.levels == look_levels([10, 20, 30], 0.1, "pocock")


PAIRED = {
    "v": {"clip": {"a": 1.0, "b": 2.5, "c": 4.0, "d": 3.0, "x": 9.0}},  # x has no reference score
    "r": {"clip": {"a": 0.5, "b": 1.0, "c": 1.0, "d": 2.5, "y": 7.0}},
}


def _expected_t(d, confidence, **fields):
    d = np.array(d, dtype=np.float64)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(student_t.isf((1 - confidence) / 2, len(d) - 1)) * sd / math.sqrt(len(d))
    return PairedCI(
        mean_diff=mean,
        low=mean - half,
        high=mean + half,
        n=len(d),
        method="t",
        confidence=confidence,
        seed=0,
        n_resamples=0,
        standard_error=sd / math.sqrt(len(d)),
        sd=sd,
        **fields,
    )


def test_t_interval_is_the_student_t_interval_of_the_differences_on_the_prompts_both_variants_scored():
    """The look's interval: mean of ``variant - reference`` over shared prompts, half-width ``t_{n-1} * sd /
    sqrt(n)``, recorded as a ``t`` interval (no resamples, no seed) with its sd and standard error for power."""
    gate = gate_from_dict(HIGHER)
    fields = {"metric": "clip", "variant": "v", "reference": "r", "category": None}
    assert t_interval(gate, PAIRED, 0.9) == _expected_t([0.5, 1.5, 3.0, 0.5], 0.9, **fields)
    assert t_interval(gate, PAIRED, 0.8, prompts=["b", "c", "x"]) == _expected_t([1.5, 3.0], 0.8, **fields)
    with pytest.raises(
        StatsError, match=r"clip v - r non_inferior\(margin=0.5\): .* at least 2 scored prompts, got 1$"
    ):
        t_interval(gate, PAIRED, 0.9, prompts=["a", "x"])


def test_t_interval_of_a_gate_without_reference_is_the_interval_of_the_variant_s_own_mean():
    gate = gate_from_dict({"metric": "clip", "variant": "v", "kind": "ci_limit", "limit": 9.0, "category": "art"})
    fields = {"metric": "clip", "variant": "v", "reference": "", "category": "art"}
    assert t_interval(gate, PAIRED, 0.95) == _expected_t([1.0, 2.5, 4.0, 3.0, 9.0], 0.95, **fields)


def _table(**shifts):
    """Scores of 40 prompts for variants named by keyword, each the reference plus its shift and a little noise."""
    ids = [f"p{i:02d}" for i in range(40)]
    noise = np.random.default_rng(11).normal(0.0, 1.0, 40)
    table = {"r": {"clip": dict.fromkeys(ids, 10.0)}}
    for name, (shift, sd) in shifts.items():
        table[name] = {"clip": {p: 10.0 + shift + sd * z for p, z in zip(ids, noise, strict=True)}}
    return ids, table


def test_each_look_reads_intervals_at_the_spent_level_split_over_the_statistical_gates():
    """With one look the level is alpha, split (Bonferroni) over the three statistical gates: an includes_zero gate
    reads the ``1 - level`` interval, one-sided gates ``1 - 2 level``; mean_limit is no test and reads
    ``1 - alpha`` without adjustment."""
    _, table = _table(v=(0.0, 1.0))
    gates = [
        {"metric": "clip", "variant": "v", "reference": "r", "kind": "includes_zero", "direction": "higher"},
        HIGHER,
        {"metric": "clip", "variant": "v", "kind": "mean_limit", "limit": 20.0, "direction": "higher"},
        {"metric": "clip", "variant": "v", "reference": "r", "kind": "superior", "direction": "higher"},
    ]
    run = SequentialGates(gates, [40], alpha=0.06)
    verdicts = run.look(table)
    assert [v.ci.confidence for v in verdicts] == pytest.approx([0.98, 0.96, 0.94, 0.96])
    assert [v.adjustment for v in verdicts] == ["bonferroni", "bonferroni", "none", "bonferroni"]
    (alone,) = SequentialGates([HIGHER], [40], alpha=0.06).look(table)
    assert alone.ci.confidence == pytest.approx(0.88)  # one statistical gate: the whole level


def test_decided_gates_stay_decided_and_a_plain_limit_waits_for_the_last_look():
    """Look 1 decides only the clear failure (listed after a limit and an unclear gate, which must not stop the
    look); look 2 decides the rest and never revisits a decided gate."""
    _, table = _table(unclear=(-0.45, 1.0), bad=(-3.0, 0.1))
    gates = [
        {"metric": "clip", "variant": "unclear", "kind": "mean_limit", "limit": 0.0, "direction": "higher"},
        {**HIGHER, "variant": "unclear"},
        {**HIGHER, "variant": "bad"},
    ]
    run = SequentialGates(gates, [20, 40])
    first = {v: {"clip": dict(list(s["clip"].items())[:20])} for v, s in table.items()}
    assert [v.gate.variant for v in run.look(first)] == ["bad"]
    assert run.decided_at == {2: 20} and run.undecided() == run.expanded[:2]
    second = run.look(table)
    assert [(v.gate.kind, v.gate.variant) for v in second] == [("mean_limit", "unclear"), ("non_inferior", "unclear")]
    assert run.decided_at == {2: 20, 0: 40, 1: 40} and run.done


def test_category_gates_look_at_their_category_s_prompts_with_the_run_s_directions():
    ids, table = _table(v=(0.0, 1.0))
    categories = {p: ("text" if i % 4 == 0 else "photo") for i, p in enumerate(ids)}
    for p in ids[::4]:
        table["v"]["clip"][p] -= 3.0  # text prompts regress
    gate = {"metric": "clip", "variant": "v", "reference": "r", "kind": "non_inferior", "margin": 0.5, "category": "*"}
    run = SequentialGates([gate], [40], directions={"clip": "higher"})
    photo, text = run.look(table, categories)
    assert (photo.ci.category, photo.ci.n, photo.passed) == ("photo", 30, True)
    assert (text.ci.category, text.ci.n, text.passed) == ("text", 10, False)
    assert text.ci.mean_diff == pytest.approx(np.mean([table["v"]["clip"][p] - 10.0 for p in ids[::4]]))


def _tight(center, n=40, sd=0.01):
    ids = [f"p{i}" for i in range(n)]
    diffs = center + sd * np.random.default_rng(13).standard_normal(n)
    return {"v": {"clip": dict(zip(ids, diffs.tolist(), strict=True))}, "r": {"clip": dict.fromkeys(ids, 0.0)}}


@pytest.mark.parametrize(
    ("gate", "center", "sd", "decided_early", "passed"),
    [
        ({**INCLUDES_ZERO, "margin": 0.5, "direction": "higher"}, 0.0, 0.01, True, True),  # equivalence shown
        ({**INCLUDES_ZERO, "margin": 0.5, "direction": "higher"}, 3.0, 0.01, True, False),  # excludes 0
        ({**INCLUDES_ZERO, "margin": 0.5, "direction": "higher"}, 0.3, 0.8, False, True),  # neither yet
        ({**INCLUDES_ZERO, "direction": "higher"}, 0.0, 0.01, False, True),  # no margin: waits
        ({**NON_INFERIOR, "direction": "lower"}, 0.45, 1.0, False, None),  # unclear, lower is better
        ({**NON_INFERIOR, "kind": "equivalent", "direction": "higher"}, 0.3, 1.0, False, None),  # unclear
        ({**NON_INFERIOR, "kind": "equivalent", "direction": "higher"}, 3.0, 0.01, True, False),  # far outside
        ({**NON_INFERIOR, "kind": "equivalent", "direction": "higher"}, -3.0, 0.01, True, False),
    ],
)
def test_a_look_decides_a_gate_early_only_when_its_interval_settles_it(gate, center, sd, decided_early, passed):
    run = SequentialGates([gate], [20, 40])
    table = _tight(center, sd=sd)
    early = run.look({v: {"clip": dict(list(s["clip"].items())[:20])} for v, s in table.items()})
    assert bool(early) == decided_early
    if early and passed is not None:
        assert early[0].passed == passed


def test_simulate_counts_passes_and_the_prompts_each_run_used():
    """A clear failure stops every run at the first look (10 of 50 prompts), so the operating characteristics are
    exact; a gate without a reference cannot be simulated."""
    oc = simulate({**HIGHER}, true_difference=-3.0, sd=0.1, prompts=50, looks=5, runs=4, seed=7)
    assert (oc.runs, oc.pass_rate, oc.mean_prompts) == (4, 0.0, 10.0)
    clear_pass = simulate({**HIGHER}, true_difference=2.0, sd=0.1, prompts=30, looks=3, runs=3)
    assert (clear_pass.runs, clear_pass.pass_rate, clear_pass.mean_prompts) == (3, 1.0, 10.0)
    with pytest.raises(StatsError, match=r"simulate\(\) draws paired differences; give the gate a reference"):
        simulate(
            {"metric": "clip", "variant": "v", "kind": "ci_limit", "limit": 1.0, "direction": "higher"},
            true_difference=0.0,
            sd=1.0,
            prompts=10,
        )


def test_a_later_look_without_the_categories_of_a_category_gate_is_an_error():
    ids, table = _table(v=(0.0, 1.0))
    categories = {p: ("text" if i % 2 else "photo") for i, p in enumerate(ids)}
    gate = {**HIGHER, "category": "text"}
    run = SequentialGates([gate], [20, 40])
    run.look({v: {"clip": dict(list(s["clip"].items())[:20])} for v, s in table.items()}, categories)
    with pytest.raises(StatsError, match=r"^clip\[text\] v - r non_inferior\(margin=0.5\): a category gate needs"):
        run.look(table)


@pytest.mark.parametrize("side", ["low", "high"])
def test_equivalence_is_shown_early_only_when_the_interval_lies_strictly_inside_the_margin(side):
    """An interval that ends exactly on ``-margin`` or ``+margin`` does not show equivalence yet."""
    table = _tight(-0.1 if side == "low" else 0.05, sd=0.3)
    first = {v: {"clip": dict(list(s["clip"].items())[:20])} for v, s in table.items()}
    level = look_levels([20, 40], 0.05)[0]
    ci = t_interval(gate_from_dict({**INCLUDES_ZERO, "direction": "higher"}), first, 1 - level)
    margin = -ci.low if side == "low" else ci.high
    assert -margin <= ci.low < 0 < ci.high <= margin  # includes 0, inside the margin, touching one end
    run = SequentialGates([{**INCLUDES_ZERO, "margin": margin, "direction": "higher"}], [20, 40])
    assert run.look(first) == []
    wider = SequentialGates([{**INCLUDES_ZERO, "margin": margin * 1.01, "direction": "higher"}], [20, 40])
    assert len(wider.look(first)) == 1


def test_simulate_is_reproducible_and_uses_the_error_rate_and_spending_it_is_given():
    borderline = {**HIGHER}
    kw = {"true_difference": -0.3, "sd": 1.0, "prompts": 60, "runs": 12}
    assert simulate(borderline, **kw) == simulate(borderline, **kw, seed=0)
    assert simulate(borderline, **kw, seed=0) != simulate(borderline, **kw, seed=1)
    strict, loose = simulate(borderline, **kw, alpha=0.001), simulate(borderline, **kw, alpha=0.4)
    assert strict.pass_rate < loose.pass_rate
    clear = {"true_difference": 0.5, "sd": 1.0, "prompts": 100, "runs": 12}
    pocock, obf = simulate(borderline, **clear, spending="pocock"), simulate(borderline, **clear)
    assert pocock.mean_prompts < obf.mean_prompts
