"""The command line: one-line errors for everything a user can get wrong (exit 2), 1 for a failed or refused gate,
130 for an interrupted run; --out and the cache folder are checked before any work starts."""

import errno
import os
import shutil

import pytest
from PIL import Image

from quantkit import atomic
from quantkit.cli import main
from quantkit.pipelines.ideogram4 import TINY_MODEL_DIR
from quantkit.prompts.benchmark import GOLDEN_PROMPTS
from quantkit.scores import ScoreTable
from quantkit.store.cache import ImageKey
from quantkit.study import Study

PSNR = '[[gate]]\nmetric = "psnr"\nvariant = "int8_w8a8"\nkind = "ci_limit"\nlimit = {limit}\n'
LPIPS = '[[gate]]\nmetric = "lpips"\nvariant = "int8_w8a8"\nkind = "ci_limit"\nlimit = 0.3\n'


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    lines = [line for line in err.splitlines() if line.startswith("quantkit")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the study starts building a variant (what a late failure would do)."""

    def refuse(self, name):
        raise AssertionError("the study started working before checking its inputs")

    monkeypatch.setattr(Study, "variant", refuse)


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTKIT_CACHE", str(tmp_path / "cache"))
    return lambda capsys, *args: run(capsys, "study", "--quiet", "--out", str(tmp_path / "out"), *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--categories", "posterz"], "unknown category 'posterz' in benchmark-v1 (did you mean 'posters'?)"),
        (["--prompt-limit", "-1"], "prompt limit must be a positive number of prompts, got -1"),
        (["--metrics", "psnr,ssmi"], "unknown metric 'ssmi' (did you mean 'ssim'?)"),
        (["--variants", "fp8,q8_O"], "unknown variant 'q8_O' (did you mean 'q8_0'?)"),
        (
            ["--allow-skip", "variant not ran"],
            "--allow-skip: unknown skip reason 'variant not ran' (did you mean 'variant not run'?)",
        ),
    ],
)
def test_a_typo_or_impossible_value_is_one_line_and_exit_2_before_any_work(capsys, study, no_work, args, message):
    code, _, err = study(capsys, *args)
    assert code == 2 and one_line(err) == f"quantkit study: error: {message}"


def test_a_truncated_checkpoint_in_model_is_one_line(capsys, study, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL_DIR, model)
    weights = model / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, _, err = study(capsys, "--model", str(model), "--prompt-limit", "2")
    assert code == 2
    assert one_line(err).startswith(f"quantkit study: error: cannot load the Ideogram 4 pipeline from {model}")


def test_out_pointing_at_a_file_fails_before_any_work(capsys, study, no_work, tmp_path):
    (tmp_path / "out").write_text("")
    code, _, err = study(capsys)
    assert code == 2 and "report folder (--out)" in one_line(err) and "is a file" in one_line(err)


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_cache_that_cannot_be_written_fails_before_any_work(capsys, study, no_work, tmp_path, monkeypatch, where):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("QUANTKIT_CACHE", str(tmp_path / "file" if where == "a file" else tmp_path / "file" / "sub"))
    code, _, err = study(capsys)
    assert code == 2 and "cache folder ($QUANTKIT_CACHE or --cache)" in one_line(err)


def test_ctrl_c_says_what_was_kept_and_exits_130(capsys, study, monkeypatch):
    def interrupted(self, name):
        key = ImageKey("w", "none", "", "", "g", "{}", 1, "{}", (16, 16), "{}")
        self.cache.store(key, Image.new("RGB", (16, 16)), seconds=1.0, peak_memory_bytes=None)
        raise KeyboardInterrupt

    monkeypatch.setattr(Study, "variant", interrupted)
    code, _, err = study(capsys, "--prompt-limit", "2")
    assert code == 130 and one_line(err) == "quantkit study: interrupted: 1 images cached; rerun resumes"


@pytest.fixture
def report(tmp_path, capsys):
    """``quantkit report`` on a stored score table: int8_w8a8 has PSNR scores, LPIPS was not measured."""
    table = ScoreTable()
    table.add("int8_w8a8", "psnr", {f"p{i}": 30.0 + (i % 3) for i in range(20)}, direction="higher")
    table.not_measured["lpips"] = "AlexNet backbone alexnet-owt-7be5be79.pth not found: " + "how to fetch it; " * 20
    table.save(tmp_path / "scores.json")

    def call(profile, *args):
        (tmp_path / "gates.toml").write_text(profile)
        argv = ["report", str(tmp_path / "scores.json"), "--gates", str(tmp_path / "gates.toml")]
        return run(capsys, *argv, "--out", str(tmp_path / "out"), "--n-resamples", "200", *args)

    return call


def test_a_failed_gate_exits_1(report):
    code, out, _ = report(PSNR.format(limit=35.0))
    assert code == 1 and "gate ci_limit failed" in out


def test_a_skip_nobody_allowed_exits_1_and_an_allowed_one_is_counted(report):
    code, out, _ = report(PSNR.format(limit=20.0) + LPIPS)
    assert code == 1 and "this skip is not allowed" in out
    code, out, _ = report(PSNR.format(limit=20.0) + LPIPS, "--allow-skip", "weights not on this machine")
    assert code == 0
    assert out.splitlines()[-1] == "gates (gates): 1 passed, 0 failed, 1 skipped (weights not on this machine: 1)"
    assert out.count("alexnet-owt-7be5be79.pth") == 1  # the not-measured reason is printed once


def test_a_full_disk_is_one_line(report, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    code, _, err = report(PSNR.format(limit=20.0))
    assert code == 2 and "No space left on device: free some space" in one_line(err)


def test_golden_verify_with_no_arguments_verifies_every_recorded_set(capsys):
    code, out, _ = run(capsys, "golden", "verify")
    assert code == 0 and "golden set tiny/benchmark-v1-limit10" in out and "files match the manifest" in out


def test_golden_verify_of_an_unknown_set_names_the_recorded_ones(capsys):
    code, _, err = run(capsys, "golden", "verify", "--prompt-set", "benchmark-v1", "--model", "tiny")
    assert code == 2 and "recorded sets: tiny/benchmark-v1-limit10" in one_line(err)


def test_a_custom_prompt_file_gets_its_manifest_from_the_command_the_error_names(capsys, tmp_path, no_work):
    prompts = tmp_path / "mine.jsonl"
    prompts.write_text("".join((GOLDEN_PROMPTS / "benchmark-v1.jsonl").read_text().splitlines(keepends=True)[:12]))
    os.environ.pop("QUANTKIT_CACHE", None)
    argv = ["study", "--prompts", str(prompts), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and f"write it with `quantkit prompts manifest {prompts}`" in one_line(err)
    assert run(capsys, "prompts", "manifest", str(prompts))[0] == 0
    assert (tmp_path / "mine.manifest.json").is_file()


def test_golden_recipes_exits_1_with_the_drift_message_when_a_recipe_changes(capsys, monkeypatch):
    import dataclasses

    from quantkit.recipes import Int8W8A8, registry, variant_spec

    assert run(capsys, "golden", "recipes")[0] == 0
    drifted = dataclasses.replace(variant_spec("int8_w8a8"), recipe=lambda: Int8W8A8(alpha=1.0, protect="auto"))
    monkeypatch.setitem(registry._VARIANTS, "int8_w8a8", drifted)
    code, _, err = run(capsys, "golden", "recipes")
    assert code == 1 and "this changes the published recipe; update the golden on purpose" in err
