"""The study's INT8 plan is the golden one: a change to what calibration decides (protected layers, SmoothQuant
strength, calibrated steps) fails here even when it moves the images too little for a fidelity gate.
``quantkit golden plan --update`` rewrites the golden plan on purpose, a step that shows up in review."""

import pytest

from quantkit import int8_plan


def test_int8_plan_matches_its_golden_copy(quantkit_study):
    config = quantkit_study.config
    if int8_plan.VARIANT not in config.variants:
        pytest.skip(f"{int8_plan.VARIANT} is not among this run's variants ({', '.join(config.variants)})")
    path = int8_plan.golden_path(config)
    if not path.is_file():
        pytest.skip(f"no golden INT8 plan for these settings at {path}; record one: quantkit golden plan --update")
    assert int8_plan.problems(quantkit_study) == []
