"""Under pytest a gate never passes by accident: a profile that cannot be built is a failing test (never a missing
one), a skip passes only for an allowed reason, and a session in which no gate was decided fails."""

import pytest

import quantkit.cli.options
import quantkit.pipelines.ideogram4
import quantkit.profiles
import quantkit.report.summary
import quantkit.stats  # noqa: F401 - imported once here: pytester's in-process runs must not re-import torch modules
from quantkit.scores import ScoreTable

pytest_plugins = ["pytester"]

GATE_MODULE = 'GATE_FAMILY = "fidelity"\n\n\ndef test_gate(quantkit_gate):\n    quantkit_gate()\n'
PSNR = '[[gate]]\nmetric = "psnr"\nvariant = "int8_w8a8"\nkind = "ci_limit"\nlimit = 20.0\n'
LPIPS = '[[gate]]\nmetric = "lpips"\nvariant = "int8_w8a8"\nkind = "ci_limit"\nlimit = 0.3\n'


@pytest.fixture
def gated(pytester):
    """Run the gate tests of a profile against a stored score table (no generation), like CI merging shards."""
    pytester.makepyfile(test_gates_of_this_profile=GATE_MODULE)  # a basename no real suite module has
    table = ScoreTable()
    table.add("int8_w8a8", "psnr", {f"p{i}": 30.0 + (i % 3) for i in range(20)}, direction="higher")
    table.not_measured["lpips"] = "AlexNet backbone not in $TORCH_HOME/hub/checkpoints"
    table.save(pytester.path / "scores.json")

    def run(profile: str, *args: str):
        (pytester.path / "gates.toml").write_text(profile)
        return pytester.runpytest_inprocess(
            "--quantkit-gates",
            "gates.toml",
            "--quantkit-scores",
            "scores.json",
            "--quantkit-n-resamples",
            "200",
            "-rA",
            *args,
        )

    return run


def test_a_misspelled_metric_is_a_failing_gate_test_naming_the_closest_metric(gated):
    result = gated(PSNR.replace('"psnr"', '"pnsr"'))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unknown metric 'pnsr' (did you mean 'psnr'?)*"])


def test_a_skip_for_a_reason_nobody_allowed_fails(gated):
    result = gated(PSNR + LPIPS)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*lpips: int8_w8a8: gate ci_limit skipped: weights not on this machine*not allowed*"])


@pytest.mark.parametrize("where", ["profile", "command line"])
def test_an_allowed_skip_is_a_skip_and_the_summary_counts_it(gated, where):
    if where == "profile":
        result = gated('[profile]\nallow_skip = ["weights not on this machine"]\n' + PSNR + LPIPS)
    else:
        result = gated(PSNR + LPIPS, "--quantkit-allow-skip", "weights not on this machine")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["gates (gates): 1 passed, 0 failed, 1 skipped (weights not on this machine: 1)"])


def test_a_gate_on_a_variant_the_run_did_not_produce_fails(gated):
    result = gated(PSNR + PSNR.replace("int8_w8a8", "q8_0"))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*q8_0: gate ci_limit skipped: variant not run*"])


def test_a_session_in_which_no_gate_was_decided_fails(gated):
    result = gated('[profile]\nallow_skip = ["weights not on this machine"]\n' + LPIPS)
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no gate was evaluated*"])


def test_a_bad_option_is_a_one_line_usage_error(pytester):
    pytester.makepyfile(test_x="def test_variant(variant):\n    pass\n")
    result = pytester.runpytest_inprocess("--quantkit-prompt-limit", "-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*quantkit: prompt limit must be a positive number of prompts, got -1"])


def test_the_options_missing_before_are_read_and_checked_like_the_cli_reads_them(pytester):
    pytester.makepyfile(test_x="def test_variant(variant):\n    pass\n")
    result = pytester.runpytest_inprocess("--quantkit-resolution", "100")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*quantkit: --quantkit-resolution '100': give H or HxW, each a positive multiple*"])
    result = pytester.runpytest_inprocess("--quantkit-preset", "SMOK")
    result.stderr.fnmatch_lines(["*quantkit: unknown sampler preset 'SMOK' (did you mean 'SMOKE'?)"])
    result = pytester.runpytest_inprocess("--quantkit-reference", "q8_0", "--quantkit-variants", "fp8")
    result.stderr.fnmatch_lines(["*quantkit: reference variant 'q8_0' is not among the variants ('fp8',)"])


def test_the_unprefixed_option_names_still_work_for_one_release_and_say_their_new_name(gated):
    result = gated(PSNR + LPIPS, "--allow-skip", "weights not on this machine", "--gates", "gates.toml")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*PytestDeprecationWarning: quantkit: --gates is deprecated and goes in the next release; "
            "use --quantkit-gates",
            "*--allow-skip is deprecated*use --quantkit-allow-skip",
        ]
    )
