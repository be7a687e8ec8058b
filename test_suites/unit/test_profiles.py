"""Gate profiles load from versioned TOML, reject typos before any generation, and skip what a run cannot decide."""

import pytest

from quantkit.errors import QuantkitError
from quantkit.profiles import load_profile
from quantkit.scores import ScoreTable


def _write(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


GATE = '[[gate]]\nmetric = "psnr"\nvariant = "int8_w8a8"\nkind = "ci_limit"\nlimit = 20.0\n'


def test_shipped_profiles_load_and_validate_every_gate():
    profile = load_profile("ideogram4")
    assert profile.adjustment == "holm"
    assert {g["variant"] for g in profile.gates} >= {"int8_w8a8", "q4_k"}


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(QuantkitError, match="ideogram4"):
        load_profile("no-such-profile")


def test_a_typo_in_a_gate_fails_at_load_time(tmp_path):
    with pytest.raises(QuantkitError, match="gate #1"):
        load_profile(_write(tmp_path, GATE.replace("limit =", "limt =")))


def test_a_typo_in_the_header_fails_at_load_time(tmp_path):
    with pytest.raises(QuantkitError, match="adjustmnet"):
        load_profile(_write(tmp_path, '[profile]\nadjustmnet = "holm"\n' + GATE))


def test_gates_on_unmeasured_metrics_or_absent_variants_are_skipped_with_the_reason(tmp_path):
    text = GATE + GATE.replace("psnr", "lpips").replace('"ci_limit"\nlimit = 20.0', '"ci_limit"\nlimit = 0.3')
    profile = load_profile(_write(tmp_path, text))
    table = ScoreTable()
    table.not_measured["lpips"] = "no AlexNet backbone in TORCH_HOME"
    table.add("nf4", "psnr", {"a": 1.0, "b": 2.0}, direction="higher")
    verdicts, skipped = profile.evaluate(table, n_resamples=200)
    assert verdicts == []
    assert [s.reason for s in skipped] == [
        "no psnr scores for int8_w8a8 in this run",
        "lpips not measured (no AlexNet backbone in TORCH_HOME)",
    ]


def test_decidable_gates_get_verdicts(tmp_path):
    profile = load_profile(_write(tmp_path, GATE))
    table = ScoreTable()
    table.add("int8_w8a8", "psnr", {f"p{i}": 30.0 + (i % 3) for i in range(20)}, direction="higher")
    (verdict,), skipped = profile.evaluate(table, n_resamples=500)
    assert verdict.passed and not skipped
    assert "gate ci_limit passed" in verdict.message
