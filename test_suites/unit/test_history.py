"""The quality history: every study appends its summary to one SQLite file; the trend, the report's plot and the
"last passed at" of a failing gate are read back from it; concurrent appends queue; a damaged file is one line."""

import json
import sqlite3
import subprocess
import threading

import pytest

# imported once here, as the plugin's gated run needs them: pytester's in-process runs must not re-import torch modules
import quantkit.cli.options
import quantkit.stats
import quantkit.store.cache  # noqa: F401
from quantkit.cli import main
from quantkit.errors import StoreError
from quantkit.history import (
    SCHEMA_VERSION,
    History,
    Recording,
    Run,
    annotate,
    environment_id,
    gate_records,
    git_state,
    results_of,
)
from quantkit.profiles import load_profile
from quantkit.report.build import render
from quantkit.report.trend import trend_figure
from quantkit.scores import ScoreTable

pytest_plugins = ["pytester"]
GATE = '[[gate]]\nmetric = "psnr"\nvariant = "q8_0"\nkind = "ci_limit"\nlimit = 30.0\n'
SETTINGS = {"model": "tiny", "prompt_limit": 4}


def table_with(psnr: float) -> ScoreTable:
    """q8_0's PSNR around ``psnr`` and fp8's OCR on four prompts."""
    table = ScoreTable()
    table.add("q8_0", "psnr", {f"p{i}": psnr + i * 0.5 for i in range(4)}, direction="higher")
    table.add("fp8", "ocr_exact", {f"p{i}": float(i % 2) for i in range(4)}, direction="higher")
    return table


@pytest.fixture
def profile(tmp_path):
    (tmp_path / "psnr.toml").write_text(GATE)
    return load_profile(tmp_path / "psnr.toml")


def run_of(table, gates, *, commit, timestamp, model="tiny", settings=SETTINGS) -> Run:
    return Run(
        git_commit=commit,
        dirty=False,
        environment="lock:test",
        timestamp=timestamp,
        model=model,
        profile=gates.profile,
        settings=settings,
        images_generated=8,
        images_cached=0,
        wall_seconds=1.5,
        results=results_of(table, n_resamples=200),
        verdicts=gate_records(gates),
    )


@pytest.fixture
def two_runs(tmp_path, profile):
    """A history where q8_0's PSNR gate passed at commit aaaa111 and failed at bbbb222."""
    history = History(tmp_path / "h" / "history.sqlite")
    passing, failing = table_with(35.0), table_with(20.0)
    history.append(
        run_of(
            passing,
            profile.evaluate(passing, n_resamples=200),
            commit="a" * 4 + "111" + "0" * 33,
            timestamp="2026-12-01T10:00:00+00:00",
        )
    )
    history.append(
        run_of(
            failing,
            profile.evaluate(failing, n_resamples=200),
            commit="b" * 4 + "222" + "0" * 33,
            timestamp="2026-12-02T10:00:00+00:00",
        )
    )
    return history


def test_a_run_is_recorded_with_the_mean_and_the_ci_of_the_mean_per_variant_and_metric(two_runs):
    series = two_runs.trend()
    assert set(series) == {("q8_0", "psnr"), ("fp8", "ocr_exact")}
    first, second = series[("q8_0", "psnr")]
    assert (first.label, second.label) == ("aaaa111", "bbbb222")
    assert first.mean == pytest.approx(35.75) and second.mean == pytest.approx(20.75)
    assert first.ci_low < first.mean < first.ci_high and first.n == 4
    assert (first.verdicts, second.verdicts) == (("passed",), ("failed",))
    assert series[("fp8", "ocr_exact")][0].verdicts == ()  # no gate on it


def test_the_file_carries_its_schema_version(two_runs):
    with sqlite3.connect(two_runs.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT images_generated, wall_seconds FROM runs").fetchall() == [(8, 1.5), (8, 1.5)]


def test_filters_select_variants_metrics_models_and_the_last_runs(two_runs):
    assert list(two_runs.trend(metrics=["psnr"])) == [("q8_0", "psnr")]
    assert list(two_runs.trend(variants=["fp8"])) == [("fp8", "ocr_exact")]
    assert [p.label for p in two_runs.trend(last=1)[("q8_0", "psnr")]] == ["bbbb222"]
    assert two_runs.trend(model="some/other/model") == {}


def test_a_failing_gate_names_the_last_commit_where_it_passed(two_runs, profile):
    failing = profile.evaluate(table_with(20.0), n_resamples=200)
    (verdict,) = annotate(failing, two_runs, model="tiny").verdicts
    assert not verdict.passed
    assert verdict.message.endswith("gate ci_limit failed; last passed at aaaa111 (2026-12-01)")


def test_a_gate_that_never_passed_or_passes_now_is_not_annotated(tmp_path, two_runs, profile):
    failing = profile.evaluate(table_with(20.0), n_resamples=200)
    assert annotate(failing, History(tmp_path / "absent.sqlite"), model="tiny") == failing
    assert annotate(failing, two_runs, model="another model") == failing  # another model's passes do not count
    passing = profile.evaluate(table_with(35.0), n_resamples=200)
    assert annotate(passing, two_runs, model="tiny") == passing


def test_concurrent_appends_all_land(tmp_path, profile):
    """Eight writers (one connection each, as eight processes would have) append at once: none fails, none is lost."""
    history = History(tmp_path / "history.sqlite")
    table = table_with(35.0)
    run = run_of(table, profile.evaluate(table, n_resamples=200), commit="c" * 40, timestamp="2026-12-01T00:00:00")
    errors = []

    def writer():
        try:
            for _ in range(5):
                History(history.path).append(run)
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert history.run_count() == 40
    assert len(history.trend()[("q8_0", "psnr")]) == 40


def test_a_damaged_file_is_one_line_naming_it(tmp_path, profile):
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is no database, just text that happens to be here" * 100)
    table = table_with(35.0)
    with pytest.raises(StoreError, match=r"history\.sqlite: file is not a database") as err:
        History(path).append(run_of(table, profile.evaluate(table), commit="d" * 40, timestamp="2026-12-01"))
    assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="file is not a database"):
        History(path).trend()


def test_a_history_of_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, this quantkit reads"):
        History(path).trend()


def test_another_sqlite_database_is_never_written_into(tmp_path, profile):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    table = table_with(35.0)
    with pytest.raises(StoreError, match="is an SQLite database but not a quality history"):
        History(path).append(run_of(table, profile.evaluate(table), commit="e" * 40, timestamp="2026-12-01"))
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_the_commit_is_git_head_with_a_dirty_flag_and_unknown_outside_git(tmp_path):
    assert git_state(tmp_path) == ("unknown", False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "f.txt").write_text("one")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "f.txt").write_text("two")
    assert git_state(tmp_path) == (head, True)


# -- the report ---------------------------------------------------------------------------------------------------
def report(tmp_path, profile, table, history_path, name):
    recording = Recording(History(history_path), model="tiny", settings=SETTINGS, images_generated=8)
    built = render(
        table,
        reference="fp8",
        profile=profile,
        out_dir=tmp_path / name,
        title="t",
        settings=SETTINGS,
        n_resamples=200,
        history=recording,
    )
    return built, recording


def test_the_report_draws_the_trend_once_the_history_has_two_runs(tmp_path, profile):
    path = tmp_path / "history.sqlite"
    report(tmp_path, profile, table_with(35.0), path, "one")
    assert not (tmp_path / "one" / "trend.png").exists()  # one run is no trend
    assert "Quality history" not in (tmp_path / "one" / "index.html").read_text()
    second, recording = report(tmp_path, profile, table_with(20.0), path, "two")
    assert recording.error is None
    png = (tmp_path / "two" / "trend.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    page = (tmp_path / "two" / "index.html").read_text()
    assert '<h2>Quality history</h2><img src="data:image/png;base64,' in page
    assert "![mean and 95% CI per commit](trend.png)" in (tmp_path / "two" / "report.md").read_text()
    # the plot holds both runs: PSNR's panel has q8_0's two means, with their CIs as bars
    series = History(path).trend(settings=SETTINGS)
    figure = trend_figure(series)
    psnr_axis = next(ax for ax in figure.axes if ax.get_ylabel().startswith("PSNR"))
    (line,) = psnr_axis.get_lines()[:1]
    assert list(line.get_xdata()) == [0, 1]
    assert list(line.get_ydata()) == pytest.approx([35.75, 20.75])
    # and the failing gate of the second run says where it last passed
    ((status, message),) = second.verdict_lines
    assert status == "failed" and "; last passed at " in message


def test_a_damaged_history_costs_the_report_nothing(tmp_path, profile):
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"garbage" * 1000)
    built, recording = report(tmp_path, profile, table_with(35.0), path, "out")
    assert built.index.is_file() and (tmp_path / "out" / "scores.json").is_file()
    assert "file is not a database" in recording.error and "\n" not in recording.error


# -- the command ---------------------------------------------------------------------------------------------------
def test_quantkit_history_prints_each_series_in_commit_order(capsys, two_runs):
    assert main(["history", "--history", str(two_runs.path), "--metric", "psnr"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "q8_0 psnr"
    assert lines[1].split()[:2] == ["aaaa111", "2026-12-01T10:00:00+00:00"[:19]]
    assert "35.75 [" in lines[1] and lines[1].endswith("n=4  passed")
    assert lines[2].startswith("  bbbb222") and lines[2].endswith("failed")
    assert len(lines) == 3


def test_quantkit_history_json_and_last(capsys, two_runs):
    assert main(["history", "--history", str(two_runs.path), "--json", "--last", "1", "--variant", "q8_0"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["variant"], entry["metric"]) == ("q8_0", "psnr")
    assert [r["git_commit"][:7] for r in entry["runs"]] == ["bbbb222"]
    assert entry["runs"][0]["verdicts"] == ["failed"]


def test_quantkit_history_without_a_history_is_one_line(capsys, tmp_path):
    assert main(["history", "--history", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quantkit history: error: no quality history at ") and err.count("\n") == 1


def test_study_takes_a_history_path_or_none_but_not_both(capsys):
    from quantkit.cli import build_parser

    args = build_parser().parse_args(["study", "--history", "h.sqlite"])
    assert str(args.history) == "h.sqlite" and not args.no_history
    assert build_parser().parse_args(["study", "--no-history"]).no_history
    with pytest.raises(SystemExit):
        build_parser().parse_args(["study", "--history", "h.sqlite", "--no-history"])
    assert "not allowed with argument" in capsys.readouterr().err


# -- the pytest plugin --------------------------------------------------------------------------------------------
def test_the_plugin_records_each_gated_run_and_a_failing_gate_test_names_where_it_last_passed(pytester):
    pytester.makepyfile(test_gates_of_this_profile="def test_gate(quantkit_gate):\n    quantkit_gate()\n")
    (pytester.path / "gates.toml").write_text(GATE)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(pytester.path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "gates.toml"], check=True)
    subprocess.run([*git, "commit", "-qm", "gates"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    history = pytester.path / "quality.sqlite"
    environment_id()  # torch's CPU probe runs once, outside the in-process runs (whose imports are undone after)

    def gated(psnr: float):
        table_with(psnr).save(pytester.path / "scores.json")
        options = ["--gates", "gates.toml", "--quantkit-scores", "scores.json", "--n-resamples", "200"]
        return pytester.runpytest_inprocess(*options, "--quantkit-history", str(history))

    gated(35.0).assert_outcomes(passed=1)
    failed = gated(20.0)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines([f"*gate ci_limit failed; last passed at {head[:7]} (20*)"])
    assert [p.verdicts for p in History(history).trend()[("q8_0", "psnr")]] == [("passed",), ("failed",)]


# -- end to end ---------------------------------------------------------------------------------------------------
@pytest.mark.slow  # two real studies on the random tiny model: about a minute on a free CPU core
def test_two_studies_make_a_history_that_quantkit_history_prints_and_the_report_draws(capsys, tmp_path):
    history = tmp_path / "history.sqlite"
    study = ["study", "--model", "tiny-random", "--prompt-limit", "2", "--variants", "fp8,q8_0", "--quiet"]
    study += ["--metrics", "psnr,ssim,ocr_exact", "--cache", str(tmp_path / "cache"), "--history", str(history)]
    for out in ("first", "second"):  # the second finds every image in the cache
        main([*study, "--out", str(tmp_path / out)])
        capsys.readouterr()
    with sqlite3.connect(history) as db:
        counts = db.execute("SELECT images_generated, images_cached FROM runs ORDER BY id").fetchall()
    assert counts == [(4, 0), (0, 4)]

    assert main(["history", "--history", str(history), "--variant", "q8_0", "--metric", "psnr"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "q8_0 psnr" and len(lines) == 3  # two runs
    first, second = History(history).trend(variants=["q8_0"], metrics=["psnr"])[("q8_0", "psnr")]
    assert first.mean == second.mean  # the same images: the same scores

    assert not (tmp_path / "first" / "trend.png").exists()
    assert (tmp_path / "second" / "trend.png").read_bytes().startswith(b"\x89PNG")
    assert "<h2>Quality history</h2>" in (tmp_path / "second" / "index.html").read_text()
    psnr = next(ax for ax in trend_figure(History(history).trend()).axes if ax.get_ylabel().startswith("PSNR"))
    assert list(psnr.get_lines()[0].get_xdata()) == [0, 1]
