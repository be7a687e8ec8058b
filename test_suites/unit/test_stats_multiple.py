"""Holm's step-down on confidence levels rejects exactly what Holm on p-values rejects; Bonferroni never more."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantkit.errors import StatsError
from quantkit.stats import adjust


def hypotheses_with_pvalues(pvalues):
    """A hypothesis with p-value p is rejected at level a exactly when p <= a (what a nested CI family gives)."""
    return [lambda level, p=p: p <= level for p in pvalues]


def textbook_holm(pvalues, alpha):
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = set()
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        rejected.add(i)
    return [i in rejected for i in range(len(pvalues))]


def test_holm_rejects_what_bonferroni_misses():
    pvalues = [0.04, 0.01, 0.015]
    holm = adjust(hypotheses_with_pvalues(pvalues), 0.05, "holm")
    bonferroni = adjust(hypotheses_with_pvalues(pvalues), 0.05, "bonferroni")
    assert [d.rejected for d in holm] == [True, True, True]
    assert [d.alpha for d in holm] == pytest.approx([0.05, 0.05 / 3, 0.05 / 3])  # rounds: alpha/3 takes two
    assert [d.rejected for d in bonferroni] == [False, True, True]
    assert [d.alpha for d in bonferroni] == pytest.approx([0.05 / 3] * 3)


def test_holm_stops_at_the_first_hypothesis_it_cannot_reject():
    decisions = adjust(hypotheses_with_pvalues([0.005, 0.03, 0.01, 0.04]), 0.05, "holm")
    assert [d.rejected for d in decisions] == [True, False, True, False]
    assert [d.alpha for d in decisions] == pytest.approx([0.0125, 0.025, 0.0125, 0.025])


def test_unadjusted_reads_every_gate_at_alpha():
    assert [d.alpha for d in adjust(hypotheses_with_pvalues([0.2, 0.01]), 0.05, "none")] == [0.05, 0.05]


def test_unknown_adjustment_is_an_error():
    with pytest.raises(StatsError, match="unknown multiple-comparison adjustment 'bh'"):
        adjust([], 0.05, "bh")


def test_empty_family_is_fine():
    assert adjust([], 0.05, "holm") == []


@given(st.lists(st.floats(0, 1), max_size=25), st.sampled_from([0.01, 0.05, 0.1]))
def test_step_down_on_levels_equals_textbook_holm_and_contains_bonferroni(pvalues, alpha):
    holm = adjust(hypotheses_with_pvalues(pvalues), alpha, "holm")
    bonferroni = adjust(hypotheses_with_pvalues(pvalues), alpha, "bonferroni")
    assert [d.rejected for d in holm] == textbook_holm(pvalues, alpha)
    assert all(h.rejected for h, b in zip(holm, bonferroni, strict=True) if b.rejected)
    assert all(d.alpha >= alpha / max(len(pvalues), 1) for d in holm)
