"""The pytest plugin (entry point ``pytest11: quantkit``): quantized variants as fixtures, gates as assertions.

Options choose the model, variants, prompts and gate profile; session fixtures build each variant lazily and share
its images and scores across tests; every gate of the profile becomes one test item (``gate_case``) whose failure
reads as the gate's one-line verdict; the terminal summary prints the study table (variant x metric: mean,
difference from the reference, CI) and the verdicts, and JUnit XML carries the same figures as properties.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

MARKERS = {
    "gpu": "needs a CUDA GPU; skipped where torch.cuda.is_available() is False",
    "needs_weights": "needs real model weights on this machine (see the skip reason for the variable to set)",
    "slow": "long-running; skipped unless selected with -m slow",
}
STUDY_OPTIONS = (
    "--quantkit-model",
    "--quantkit-variants",
    "--quantkit-reference",
    "--quantkit-prompts",
    "--quantkit-prompt-limit",
    "--quantkit-preset",
    "--quantkit-resolution",
    "--quantkit-device",
    "--quantkit-cache",
)
# The unprefixed names of 0.1 (other plugins may take them), still read for one release with a deprecation warning.
DEPRECATED = {
    "--variants": "--quantkit-variants",
    "--prompts": "--quantkit-prompts",
    "--prompt-limit": "--quantkit-prompt-limit",
    "--n-resamples": "--quantkit-n-resamples",
    "--gates": "--quantkit-gates",
    "--allow-skip": "--quantkit-allow-skip",
    "--golden-dir": "--quantkit-golden-dir",
    "--update-golden": "--quantkit-update-golden",
}
# How the options that are not plain strings read their value; every default is None, so "not given" is visible.
_VALUE_KINDS: dict[str, dict[str, Any]] = {
    "--quantkit-prompt-limit": {"type": int},
    "--quantkit-n-resamples": {"type": int},
    "--quantkit-allow-skip": {"action": "append"},
    "--quantkit-update-golden": {"action": "store_true", "default": None},
}
CONFIG_KEY = pytest.StashKey["Any"]()
PROFILE_KEY = pytest.StashKey["Any"]()
STUDY_KEY = pytest.StashKey["Any"]()
TABLE_KEY = pytest.StashKey["Any"]()
RESULTS_KEY = pytest.StashKey["Any"]()
COUNTS_KEY = pytest.StashKey["dict[str, int]"]()
START_KEY = pytest.StashKey[float]()
HISTORY_KEY = pytest.StashKey["Any"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    from quantkit.profiles import SKIP_REASONS

    group = parser.getgroup("quantkit", "quantkit quality-regression harness (defaults as `quantkit study`)")

    def add(name: str, **kwargs: Any) -> None:
        group.addoption(name, **_VALUE_KINDS.get(name, {}), **kwargs)

    add(
        "--quantkit-model",
        help="'tiny', 'tiny-random' or a local Ideogram 4 folder (default: $QUANTKIT_IDEOGRAM4_DIR, else tiny)",
    )
    add("--quantkit-variants", help="comma-separated variants (default: the default ones)")
    add("--quantkit-reference", help="variant the others are compared with (default: fp8)")
    add("--quantkit-prompts", help="prompt set name or .jsonl path (default: benchmark-v1)")
    add("--quantkit-prompt-limit", help="stratified prompt subset (default: 10 on tiny, all otherwise)")
    add("--quantkit-preset", help="sampler preset (default: TINY_TEXT on tiny, SMOKE on tiny-random, V4_QUALITY_48)")
    add("--quantkit-resolution", help="H or HxW in pixels (default: 128 on tiny, 1024 otherwise)")
    add("--quantkit-device", help="cpu or cuda (default: cuda when available)")
    add("--quantkit-cache", help="image and score cache (default: $QUANTKIT_CACHE or .quantkit-cache)")
    add("--quantkit-n-resamples", help="bootstrap resamples per interval (default: 10000)")
    add("--quantkit-gates", help="gate profile name or TOML path (default: tiny on tiny, ideogram4 otherwise)")
    add(
        "--quantkit-allow-skip",
        metavar="REASON",
        help=f"let gates skipped for this reason pass, besides the profile's allow_skip (repeatable): "
        f"{'; '.join(SKIP_REASONS)}",
    )
    add(
        "--quantkit-scores",
        action="append",
        default=[],
        metavar="JSON",
        help="gate on these merged score files (CI shards) instead of generating",
    )
    add("--quantkit-golden-dir", help="golden reference store (default: golden/references)")
    add("--quantkit-update-golden", help="rewrite the golden reference set of this run")
    add(
        "--quantkit-history",
        metavar="PATH",
        help="quality history (SQLite) the gated run is appended to (default: history.sqlite in the cache folder)",
    )
    old = parser.getgroup("quantkit-deprecated", "quantkit options under their deprecated unprefixed names")
    for name, new in DEPRECATED.items():
        old.addoption(name, **_VALUE_KINDS.get(new, {}), help=f"deprecated: use {new}")


def option(config: pytest.Config, name: str) -> Any:
    """The value of the quantkit option ``name`` (``--quantkit-...``), or of its deprecated unprefixed name."""
    value = config.getoption(name)
    if value is None:
        old = next((o for o, new in DEPRECATED.items() if new == name), None)
        value = config.getoption(old) if old else None
    return value


def pytest_configure(config: pytest.Config) -> None:
    from quantkit.quiet import silence_third_party_noise

    silence_third_party_noise()
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
    config.stash[COUNTS_KEY] = {"gate tests": 0, "evaluated": 0}
    config.stash[START_KEY] = time.perf_counter()  # a recorded run's wall time counts from here
    for old, new in DEPRECATED.items():
        if config.getoption(old) is not None:
            message = f"quantkit: {old} is deprecated and goes in the next release; use {new}"
            config.issue_config_time_warning(pytest.PytestDeprecationWarning(message), stacklevel=2)
    if any(option(config, name) is not None for name in STUDY_OPTIONS):
        study_config(config)  # a bad quantkit option is a usage error now, not a collection error later


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine: run on the self-hosted RTX 3090 runner")
    skip_slow = pytest.mark.skip(reason="slow: select it with -m slow (or any -m expression naming it)")
    slow_selected = "slow" in (config.option.markexpr or "")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not slow_selected:
            item.add_marker(skip_slow)


# -- configuration ----------------------------------------------------------------------------------------------
def study_config(config: pytest.Config) -> Any:
    """The session's StudyConfig from the options, built once; a bad option is a one-line usage error."""
    from quantkit.errors import QuantkitError

    if CONFIG_KEY not in config.stash:
        try:
            config.stash[CONFIG_KEY] = _study_config(config)
        except QuantkitError as err:
            raise pytest.UsageError(f"quantkit: {err}") from None
    return config.stash[CONFIG_KEY]


def _study_config(config: pytest.Config) -> Any:
    from quantkit.gguf_variant import parse_variants
    from quantkit.option_text import parse_resolution
    from quantkit.study import StudyConfig

    variants, resolution = option(config, "--quantkit-variants"), option(config, "--quantkit-resolution")
    return StudyConfig.for_model(
        option(config, "--quantkit-model"),
        variants=parse_variants(variants) if variants else None,
        reference=option(config, "--quantkit-reference"),
        prompts=option(config, "--quantkit-prompts"),
        prompt_limit=option(config, "--quantkit-prompt-limit"),
        preset=option(config, "--quantkit-preset"),
        resolution=parse_resolution(resolution, "--quantkit-resolution") if resolution else None,
        device=option(config, "--quantkit-device"),
        cache_dir=option(config, "--quantkit-cache"),
    )


def allow_skip(config: pytest.Config) -> tuple[str, ...]:
    from quantkit.profiles import check_skip_reasons

    return check_skip_reasons(option(config, "--quantkit-allow-skip") or (), "--quantkit-allow-skip")


def n_resamples(config: pytest.Config) -> int:
    return option(config, "--quantkit-n-resamples") or 10_000


def gate_profile(config: pytest.Config) -> Any:
    """The session's gate profile (loaded and validated once)."""
    from quantkit.profiles import load_profile

    if PROFILE_KEY not in config.stash:
        allow_skip(config)
        name = option(config, "--quantkit-gates") or study_config(config).gate_profile
        config.stash[PROFILE_KEY] = load_profile(name)
    return config.stash[PROFILE_KEY]


@dataclasses.dataclass(frozen=True)
class GateCase:
    """One gate of the profile, as a test parameter."""

    index: int
    spec: Mapping[str, Any]

    @property
    def id(self) -> str:
        s = self.spec
        parts = [s["variant"], s["metric"], s["kind"], s.get("category") or ""]
        return "-".join(p.replace("*", "each") for p in parts if p)


@dataclasses.dataclass(frozen=True)
class BrokenProfile:
    """A gate profile that cannot be built (a typo, an unknown metric or variant): its test fails with the reason."""

    error: str


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from quantkit.errors import QuantkitError

    if "variant" in metafunc.fixturenames:
        names = list(study_config(metafunc.config).variants)
        metafunc.parametrize("variant", names, indirect=True, scope="session", ids=names)
    if "gate_case" in metafunc.fixturenames:
        from quantkit.metrics.catalog import CATALOG

        family = getattr(metafunc.module, "GATE_FAMILY", None)  # a family of quantkit.metrics.catalog, or all
        try:
            profile = gate_profile(metafunc.config)
        except QuantkitError as err:  # a failing test, never a missing one
            metafunc.parametrize("gate_case", [BrokenProfile(str(err))], ids=["gate-profile"])
            return
        cases = [
            GateCase(i, spec)
            for i, (spec, gate) in enumerate(zip(profile.gates, profile.parsed, strict=True))
            if family is None or CATALOG[gate.metric].family == family
        ]
        if not cases:
            metafunc.parametrize(
                "gate_case",
                [
                    pytest.param(
                        None, marks=pytest.mark.skip(reason=f"gate profile {profile.name} has no {family} gates")
                    )
                ],
            )
            return
        metafunc.parametrize("gate_case", cases, ids=[c.id for c in cases])


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def quantkit_study(pytestconfig: pytest.Config) -> Any:
    """The session's :class:`quantkit.study.Study`: variants, images and scores, each built once, lazily."""
    from quantkit.study import Study

    if STUDY_KEY not in pytestconfig.stash:
        pytestconfig.stash[STUDY_KEY] = Study(study_config(pytestconfig), progress=False)
    return pytestconfig.stash[STUDY_KEY]


@pytest.fixture(scope="session")
def variant(request: pytest.FixtureRequest, quantkit_study: Any) -> Any:
    """A quantized variant (parametrised over ``--quantkit-variants``): name, recipe, pipeline, skip report."""
    return quantkit_study.variant(request.param)


@pytest.fixture(scope="session")
def reference(quantkit_study: Any) -> Any:
    return quantkit_study.variant(quantkit_study.config.reference)


@pytest.fixture(scope="session")
def images(variant: Any, quantkit_study: Any) -> dict[str, Any]:
    """prompt id -> generated image (PIL) of the variant."""
    return {pid: g.image for pid, g in quantkit_study.images(variant.name).items()}


@pytest.fixture(scope="session")
def scores(variant: Any, quantkit_study: Any) -> dict[str, dict[str, float]]:
    """metric -> prompt id -> score of the variant."""
    return quantkit_study.scores(variant.name)


@pytest.fixture(scope="session")
def quantkit_scores(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Any:
    """The run's score table: merged from --quantkit-scores files, or generated and scored now."""
    from quantkit.scores import ScoreTable

    files = pytestconfig.getoption("--quantkit-scores")
    if files:
        table = ScoreTable.merge_files(files)
    else:
        table = request.getfixturevalue("quantkit_study").score_all()
    pytestconfig.stash[TABLE_KEY] = table
    return table


@pytest.fixture(scope="session")
def gate_verdicts(pytestconfig: pytest.Config, quantkit_scores: Any) -> dict[int, list[Any]]:
    """profile gate index -> its verdicts (several for a per-category gate) or skipped-gate records.

    All gates of the profile are evaluated together, so the multiple-comparison adjustment covers the whole run.
    """
    profile = gate_profile(pytestconfig)
    results = profile.evaluate(
        quantkit_scores, allow_skip=allow_skip(pytestconfig), n_resamples=n_resamples(pytestconfig)
    )
    results = record_history(pytestconfig, quantkit_scores, results)
    pytestconfig.stash[RESULTS_KEY] = results
    by_index: dict[int, list[Any]] = {index: [] for index in range(len(profile.gates))}
    for outcome in (*results.verdicts, *results.skipped):
        by_index[outcome.index].append(outcome)
    return by_index


def record_history(config: pytest.Config, table: Any, results: Any) -> Any:
    """Append the gated run to the quality history; returns ``results`` with each failed verdict naming the commit
    where its gate last passed. A history error is reported in the summary and costs no test."""
    from quantkit.history import History, Recording, default_path
    from quantkit.store.cache import ImageCache

    study = None if option(config, "--quantkit-scores") else config.stash.get(STUDY_KEY, None)
    generated = [g for name in study.config.variants for g in study.images(name).values()] if study else []
    cached = sum(1 for g in generated if g.cached)
    settings = study_config(config)
    path = option(config, "--quantkit-history") or default_path(ImageCache(settings.cache_dir).root)
    recording = Recording(
        History(path),
        model=settings.model,
        settings=settings.settings_dict(),
        images_generated=len(generated) - cached,
        images_cached=cached,
        started=config.stash[START_KEY],
    )
    results = recording.annotate(results)
    recording.append(table, results, n_resamples=n_resamples(config))
    config.stash[HISTORY_KEY] = recording
    return results


def check_gate(case: GateCase, verdicts: list[Any], node: pytest.Item | None = None) -> None:
    """The assertion of a gate test: fail with the verdict's one line; a gate that could not be evaluated is skipped
    when its reason is allowed (profile ``allow_skip`` or ``--allow-skip``) and fails otherwise."""
    if not verdicts:
        pytest.fail(f"gate {case.id} produced no verdict", pytrace=False)
    if all(v.status == "skipped" for v in verdicts):
        if not verdicts[0].allowed:
            pytest.fail(verdicts[0].message, pytrace=False)
        pytest.skip(verdicts[0].message)
    if node is not None:
        node.config.stash[COUNTS_KEY]["evaluated"] += 1
    for verdict in verdicts:
        if node is not None:
            node.user_properties.extend(_properties(verdict))
    failed = [v.message for v in verdicts if v.status == "failed"]
    if failed:
        pytest.fail("\n".join(failed), pytrace=False)


def _properties(verdict: Any) -> Iterator[tuple[str, Any]]:
    ci = verdict.ci
    prefix = f"{ci.metric}[{ci.category}]" if ci.category else ci.metric
    yield f"{prefix}.mean_diff", ci.mean_diff
    yield f"{prefix}.ci_low", ci.low
    yield f"{prefix}.ci_high", ci.high
    yield f"{prefix}.n", ci.n
    yield f"{prefix}.method", ci.method
    yield f"{prefix}.passed", verdict.passed


@pytest.fixture
def quantkit_gate(request: pytest.FixtureRequest, gate_case: GateCase | BrokenProfile) -> Any:
    """Call it to assert the parametrised gate: ``quantkit_gate()``."""
    request.config.stash[COUNTS_KEY]["gate tests"] += 1
    if isinstance(gate_case, BrokenProfile):
        return lambda: pytest.fail(gate_case.error, pytrace=False)
    gate_verdicts = request.getfixturevalue("gate_verdicts")
    return lambda: check_gate(gate_case, gate_verdicts[gate_case.index], request.node)


@pytest.fixture(scope="session")
def quantkit_golden(pytestconfig: pytest.Config) -> Any:
    """The golden set of this run's model profile and prompt selection (``--quantkit-golden-dir`` overrides the
    root)."""
    from quantkit.golden import golden_set

    return golden_set(study_config(pytestconfig), option(pytestconfig, "--quantkit-golden-dir"))


# -- reporting --------------------------------------------------------------------------------------------------
def no_gate_evaluated(config: pytest.Config) -> bool:
    """Gate tests ran in this session but none of them decided a gate: nothing was checked, so the run fails."""
    counts = config.stash.get(COUNTS_KEY, {"gate tests": 0, "evaluated": 0})
    return counts["gate tests"] > 0 and counts["evaluated"] == 0


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == pytest.ExitCode.OK and no_gate_evaluated(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if no_gate_evaluated(config):
        terminalreporter.section("quantkit gates", red=True)
        terminalreporter.write_line("FAILED  no gate was evaluated: every gate test of this run was skipped")
    if RESULTS_KEY not in config.stash:
        return
    from quantkit.report.summary import format_table, summarize

    results = config.stash[RESULTS_KEY]
    table = config.stash[TABLE_KEY]
    terminalreporter.section("quantkit study")
    reference = study_config(config).reference
    cells = summarize(table, reference=reference, n_resamples=n_resamples(config))
    terminalreporter.write_line(format_table(cells))
    for metric, reason in table.not_measured.items():
        terminalreporter.write_line(f"not measured: {metric}: {reason}")
    for status, message in results.lines:
        terminalreporter.write_line(f"{status.upper():7s} {message}")
    terminalreporter.write_line(results.summary())
    recording = config.stash.get(HISTORY_KEY, None)
    if recording is not None and recording.error:
        terminalreporter.write_line(f"ERROR   quality history not updated: {recording.error}", red=True)
    elif recording is not None:
        terminalreporter.write_line(f"history: {recording.history.path}")


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Benchmarks are compared per GPU model: record which one ran them."""
    import torch

    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name(0)
        machine_info["cuda"] = torch.version.cuda
    machine_info["torch"] = torch.__version__
