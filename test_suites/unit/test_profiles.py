"""Gate profiles load from versioned TOML, reject every typo before any generation, and never pass by accident:
a gate is skipped only for a reason the profile or the command line allows, and a run that decides nothing fails."""

import pytest

from quantkit.errors import QuantkitError
from quantkit.profiles import SKIP_REASONS, load_profile
from quantkit.scores import ScoreTable


def _write(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


GATE = '[[gate]]\nmetric = "psnr"\nvariant = "int8_w8a8"\nkind = "ci_limit"\nlimit = 20.0\n'
ALLOW_WEIGHTS = '[profile]\nallow_skip = ["weights not on this machine"]\n'
LPIPS_GATE = '[[gate]]\nmetric = "lpips"\nvariant = "int8_w8a8"\nkind = "ci_limit"\nlimit = 0.3\n'


def _table(*variants, lpips_reason="no AlexNet backbone in TORCH_HOME"):
    table = ScoreTable()
    if lpips_reason:
        table.not_measured["lpips"] = lpips_reason
    for variant in variants:
        table.add(variant, "psnr", {f"p{i}": 30.0 + (i % 3) for i in range(20)}, direction="higher")
    return table


def test_shipped_profiles_load_and_validate_every_gate():
    profile = load_profile("ideogram4")
    assert profile.adjustment == "holm"
    assert {g["variant"] for g in profile.gates} >= {"int8_w8a8", "q4_k"}
    assert load_profile("tiny").allow_skip == ("weights not on this machine",)


def test_unknown_profile_names_the_closest():
    with pytest.raises(QuantkitError, match="did you mean 'ideogram4'"):
        load_profile("ideogram")


def test_a_typo_in_a_gate_key_fails_at_load_time(tmp_path):
    with pytest.raises(QuantkitError, match="gate #1"):
        load_profile(_write(tmp_path, GATE.replace("limit =", "limt =")))


def test_a_typo_in_the_header_fails_at_load_time(tmp_path):
    with pytest.raises(QuantkitError, match="adjustmnet"):
        load_profile(_write(tmp_path, '[profile]\nadjustmnet = "holm"\n' + GATE))


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        (GATE.replace('"psnr"', '"pnsr"'), "gate #2: unknown metric 'pnsr' (did you mean 'psnr'?)"),
        (GATE.replace('"int8_w8a8"', '"q8_O"'), "gate #2: unknown variant 'q8_O' (did you mean 'q8_0'?)"),
        (
            '[[gate]]\nmetric = "psnr"\nvariant = "int8_w8a8"\nreference = "fp9"\nkind = "superior"\n',
            "gate #2: unknown reference 'fp9' (did you mean 'fp8'?)",
        ),
    ],
)
def test_a_misspelled_metric_or_variant_fails_at_load_time_naming_the_closest(tmp_path, gate, message):
    with pytest.raises(QuantkitError) as err:
        load_profile(_write(tmp_path, GATE + gate))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_misspelled_skip_reason_fails_at_load_time(tmp_path):
    with pytest.raises(QuantkitError, match="did you mean 'weights not on this machine'"):
        load_profile(_write(tmp_path, '[profile]\nallow_skip = ["weights not on this machin"]\n' + GATE))


def test_each_verdict_and_skip_carries_the_index_of_its_gate_and_a_status(tmp_path):
    each = GATE.replace("limit = 20.0", 'limit = 20.0\ncategory = "*"')
    profile = load_profile(_write(tmp_path, LPIPS_GATE + each + GATE.replace("int8_w8a8", "q8_0")))
    table = ScoreTable()
    psnr = {f"p{i}": 30.0 + (i % 3) for i in range(20)}
    table.add("int8_w8a8", "psnr", psnr, direction="higher")
    table.categories.update({p: "odd" if int(p[1:]) % 2 else "even" for p in psnr})
    table.not_measured["lpips"] = "no AlexNet weights"
    results = profile.evaluate(table, n_resamples=200)
    verdicts = [(v.index, v.gate.category, v.status) for v in results.verdicts]
    assert verdicts == [(1, "even", "passed"), (1, "odd", "passed")]
    assert [(s.index, s.reason, s.status) for s in results.skipped] == [
        (0, "weights not on this machine", "skipped"),
        (2, "variant not run", "skipped"),
    ]


def test_a_skip_for_an_allowed_reason_passes_and_is_counted_with_its_reason(tmp_path):
    profile = load_profile(_write(tmp_path, ALLOW_WEIGHTS + GATE + LPIPS_GATE))
    results = profile.evaluate(_table("int8_w8a8"), n_resamples=200)
    assert [status for status, _ in results.lines] == ["passed", "skipped"]
    assert results.failed == 0
    assert results.summary() == "gates (p): 1 passed, 0 failed, 1 skipped (weights not on this machine: 1)"
    (skip,) = results.skipped
    assert skip.message == (
        "lpips: int8_w8a8: gate ci_limit skipped: weights not on this machine (see 'not measured: lpips')"
    )


def test_a_not_measured_reason_is_not_repeated_in_the_gate_line(tmp_path):
    profile = load_profile(_write(tmp_path, ALLOW_WEIGHTS + GATE + LPIPS_GATE))
    results = profile.evaluate(_table("int8_w8a8", lpips_reason="x" * 400), n_resamples=200)
    assert all("x" * 10 not in message for _, message in results.lines)


def test_a_skip_for_a_reason_nobody_allowed_fails_the_run_with_that_reason(tmp_path):
    profile = load_profile(_write(tmp_path, GATE + LPIPS_GATE))
    results = profile.evaluate(_table("int8_w8a8"), n_resamples=200)
    assert results.failed == 1
    status, message = results.lines[1]
    assert status == "failed" and "weights not on this machine" in message and "--allow-skip" in message


def test_the_command_line_can_allow_a_skip_reason(tmp_path):
    profile = load_profile(_write(tmp_path, GATE + LPIPS_GATE))
    results = profile.evaluate(_table("int8_w8a8"), allow_skip=["weights not on this machine"], n_resamples=200)
    assert results.failed == 0


def test_an_unknown_command_line_skip_reason_names_the_closest(tmp_path):
    profile = load_profile(_write(tmp_path, GATE))
    with pytest.raises(QuantkitError, match="did you mean 'variant not run'"):
        profile.evaluate(_table("int8_w8a8"), allow_skip=["variants not run"], n_resamples=200)


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        (_table("nf4"), "variant not run"),
        (_table("int8_w8a8", lpips_reason=""), "metric not requested"),
    ],
)
def test_a_variant_not_run_or_a_metric_not_requested_fails_unless_allowed(tmp_path, table, reason):
    gate = LPIPS_GATE if reason == "metric not requested" else GATE
    other = GATE.replace("int8_w8a8", "nf4") if reason == "variant not run" else GATE
    profile = load_profile(_write(tmp_path, other + gate))
    results = profile.evaluate(table, n_resamples=200)
    assert [s.reason for s in results.skipped] == [reason]
    assert results.failed == 1
    assert profile.evaluate(table, allow_skip=[reason], n_resamples=200).failed == 0


def test_a_run_in_which_no_gate_was_evaluated_fails_even_when_every_skip_is_allowed(tmp_path):
    profile = load_profile(_write(tmp_path, LPIPS_GATE))
    results = profile.evaluate(_table("int8_w8a8"), allow_skip=SKIP_REASONS, n_resamples=200)
    assert results.failed == 1
    assert results.lines[-1] == ("failed", "no gate of profile p was evaluated: a run must decide at least one")


def test_decidable_gates_get_verdicts(tmp_path):
    profile = load_profile(_write(tmp_path, GATE))
    results = profile.evaluate(_table("int8_w8a8", lpips_reason=""), n_resamples=500)
    (verdict,) = results.verdicts
    assert verdict.passed and not results.skipped and results.failed == 0
    assert "gate ci_limit passed" in verdict.message
