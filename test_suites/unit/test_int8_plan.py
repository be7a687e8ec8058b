"""INT8's plan (which linears stay bf16, each SmoothQuant vector, the calibrated steps) is compared with its golden
copy: treatment and steps exactly, smoothing within a relative tolerance that last-bit noise stays far inside."""

import pytest
import torch

from quantkit import int8_plan
from quantkit.errors import StoreError
from quantkit.int8_plan import Plan


def _plan(**changes):
    fields = {
        "layers": {"transformer.a": "int8", "transformer.b": "kept"},
        "steps": {"transformer": 8, "unconditional_transformer": 8},
        "smoothing": {"transformer.a": torch.tensor([1.0, 2.0, 0.5])},
    }
    return Plan(**{**fields, **changes})


def test_the_same_plan_has_no_problem_and_last_bit_noise_is_not_one():
    noisy = {"transformer.a": torch.tensor([1.0, 2.0, 0.5]) * (1 + 1e-6)}
    assert int8_plan.compare(_plan(), _plan()) == []
    assert int8_plan.compare(_plan(smoothing=noisy), _plan()) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layers": {"transformer.a": "int8", "transformer.b": "int8"}}, "1 linear(s) treated otherwise"),
        ({"steps": {"transformer": 2, "unconditional_transformer": 8}}, "calibrated steps"),
        ({"smoothing": {"transformer.a": torch.tensor([1.0, 2.0, 0.51])}}, "smoothing: transformer.a off the golden"),
        ({"smoothing": {}}, "1 vector(s) added, dropped or reshaped"),
    ],
)
def test_a_changed_decision_is_named(changes, message):
    (problem,) = int8_plan.compare(_plan(**changes), _plan())
    assert message in problem


def test_a_plan_reads_back_and_a_damaged_file_is_one_clear_error(tmp_path):
    path = tmp_path / "plan.safetensors"
    _plan().save(path, {"model": "tiny"})
    plan, settings = Plan.load(path)
    assert settings == {"model": "tiny"} and int8_plan.compare(plan, _plan()) == []
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(StoreError, match=r"cannot read the golden INT8 plan .* quantkit golden plan --update"):
        Plan.load(path)


def test_the_plan_command_asks_for_a_golden_plan_records_one_and_then_finds_it_matching(tmp_path, monkeypatch, capsys):
    from quantkit.cli import main

    monkeypatch.setattr(int8_plan, "PLANS_DIR", tmp_path / "plans")
    assert main(["golden", "plan"]) == 1
    assert "no golden INT8 plan at" in capsys.readouterr().err
    assert main(["golden", "plan", "--update"]) == 0
    assert main(["golden", "plan"]) == 0
    assert "the INT8 plan matches" in capsys.readouterr().out
