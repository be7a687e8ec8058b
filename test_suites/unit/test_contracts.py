"""Every quantized layer computes its documented arithmetic, and the text metric normalises as documented: checked on
fixed inputs against float64 oracles, so a fault too small for the tiny model's fidelity gates still fails."""

import pytest

from quantkit import contracts, faults


def test_every_layer_and_the_text_metric_keep_their_contracts():
    assert contracts.check() == []


def test_correct_layers_sit_well_inside_the_tolerance():
    """float32 rounding over K = 512 terms; a tenth of the tolerance leaves room for another CPU's summation order."""
    errors = contracts.layer_errors()
    assert set(errors) == {"fp8", "q4_k", "q8_0", "nf4", "int8_w8a8"}
    assert max(errors.values()) < contracts.LAYER_TOLERANCE / 10, errors


LAYER_FAULTS = [
    (name, severity, layers)
    for name, layers in (
        ("w8a8_accumulator_dtype", ("int8_w8a8",)),
        ("w8a8_activation_scale", ("int8_w8a8",)),
        ("gguf_bias", ("q4_k", "q8_0")),
    )
    for severity in faults.CATALOGUE[name].severities
]


@pytest.mark.parametrize(("fault", "severity", "layers"), LAYER_FAULTS)
def test_a_planted_layer_fault_breaks_exactly_its_layers_contracts(fault, severity, layers):
    with faults.CATALOGUE[fault].patch(severity):
        broken = contracts.check()
    assert [line.split(":")[0] for line in broken] == [f"layer {name}" for name in layers]


def test_ocr_that_keeps_case_breaks_the_text_contract():
    with faults.CATALOGUE["ocr_case"].patch(1.0):
        broken = contracts.check()
    assert broken and all(line.startswith("text ") for line in broken)
    assert "text normalise: normalise('OPEN') = 'OPEN', documented 'open'" in broken
