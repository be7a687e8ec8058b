"""Every planted fault does what it claims while injected, and leaves nothing behind.

For each fault of :data:`quantkit.faults.CATALOGUE`: its probe (codec bytes, a layer's output, calibration results,
sampler arguments, OCR matches, the pairs a fidelity metric compares) differs inside ``inject()`` at every listed
severity and is back to the original after; the cache identity of exactly its variants changes while injected, so
no stale image is read.
"""

import dataclasses

import pytest
import torch

from quantkit import faults, study
from quantkit import generation as cached

NAMES = sorted(faults.CATALOGUE)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    return a == b


def test_the_catalogue_covers_every_variant_and_stage():
    catalogue = faults.CATALOGUE.values()
    assert len(faults.CATALOGUE) >= 14
    assert {v for f in catalogue for v in f.variants} == set(study.DEFAULT_VARIANTS)
    assert {f.stage for f in catalogue} == {"codec", "layer", "calibration", "pipeline", "harness"}
    assert {f.effect for f in catalogue} == {"worse", "different"}
    for fault in catalogue:
        assert fault.must_catch in fault.severities, fault.name
        assert fault.description and fault.family


@pytest.mark.parametrize("name", NAMES)
def test_inject_changes_what_the_fault_claims_and_restores_it(name):
    fault = faults.CATALOGUE[name]
    before = fault.probe()
    for severity in fault.severities:
        with fault.inject(severity):
            during = fault.probe()
        assert not same(during, before), f"{name} at {severity} changed nothing its probe sees"
        assert same(fault.probe(), before), f"{name} at {severity} was not undone on exit"


@pytest.mark.parametrize("name", NAMES)
def test_inject_salts_exactly_its_variants_cache_identity(name):
    fault = faults.CATALOGUE[name]
    before = {v: cached.quantizer_version(v) for v in study.DEFAULT_VARIANTS}
    generation = cached.generation_code_version
    score_id = study._score_id
    with fault.inject():
        during = {v: cached.quantizer_version(v) for v in study.DEFAULT_VARIANTS}
        pipeline_salted = cached.generation_code_version is not generation
        scores_salted = study._score_id is not score_id
    every = set(fault.variants) == set(study.DEFAULT_VARIANTS)
    assert pipeline_salted == every
    changed = {v for v in before if during[v] != before[v]}
    assert changed == (set() if every else set(fault.variants))
    assert scores_salted == (fault.stage == "harness")
    assert {v: cached.quantizer_version(v) for v in study.DEFAULT_VARIANTS} == before
    assert cached.generation_code_version is generation and study._score_id is score_id


def test_a_severity_of_zero_is_refused():
    with pytest.raises(ValueError, match="severity must be > 0"), faults.CATALOGUE["int8_scale"].inject(0):
        pass


def test_faults_are_frozen_records():
    with pytest.raises(dataclasses.FrozenInstanceError):
        faults.CATALOGUE["seed"].must_catch = 2.0
