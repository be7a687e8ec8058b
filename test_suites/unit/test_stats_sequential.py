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

from quantkit.errors import StatsError
from quantkit.stats import minimum_detectable_difference
from quantkit.stats.sequential import SequentialGates, look_levels, simulate, spent, stratified_batches

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
