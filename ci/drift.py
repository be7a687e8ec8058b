"""What the newest releases would change: resolve them, run the suite, and say which package moved which test.

The scheduled `dependency-drift` job runs this; `make test` never does (the lock is what every machine installs).

    python ci/drift.py --out drift/          # needs uv and network access to the package registry

Steps: resolve ``pyproject.toml`` without the lock's pins or ``ci/lock-constraints.txt`` into ``newest.lock``;
list the packages whose version moved; run the suite in a venv built from that lock; then, for every test that
fails there, install the locked environment plus ONE moved package at its newest version (``--no-deps``) and rerun
just those tests, so each failure is attributed to the package that causes it alone, or reported as an interaction.
Exit status: 0 when the newest releases pass, 1 when some test fails (the job is allowed to fail: it is a report).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python ci/drift.py` before quantkit is installed
from quantkit.environment import pins  # noqa: E402 - the one lock parser (stdlib only)

RESOLVE = ["--extra", "dev", "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28", "--no-header"]


def moved(locked: Mapping[str, str], newest: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """``(package, locked, newest)`` for every package whose pin differs, added or dropped (None), by name."""
    return [
        (name, locked.get(name), newest.get(name))
        for name in sorted(locked.keys() | newest.keys())
        if locked.get(name) != newest.get(name)
    ]


def failed_tests(junit_xml: Path) -> set[str]:
    """Node ids (``path::name``) of the failed or errored test cases of a JUnit XML report."""
    if not junit_xml.is_file():
        return set()
    failed = set()
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            path = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
            failed.add(f"{path}::{case.get('name')}")
    return failed


def attribute(failing: Iterable[str], failing_with: Mapping[str, set[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Which moved package makes each failing test fail on its own (``failing_with``: package -> tests failing
    with only that package moved); the tests no single package explains are interactions."""
    by_test: dict[str, list[str]] = {}
    for test in sorted(failing):
        by_test[test] = sorted(package for package, tests in failing_with.items() if test in tests)
    unexplained = [test for test, packages in by_test.items() if not packages]
    return {test: packages for test, packages in by_test.items() if packages}, unexplained


def report(
    changes: list[tuple[str, str | None, str | None]], attributed: Mapping[str, list[str]], unexplained: list[str]
) -> str:
    lines = [f"{len(changes)} packages moved from the lock:"]
    lines += [f"  {name}: {old or 'absent'} -> {new or 'absent'}" for name, old, new in changes]
    if not attributed and not unexplained:
        lines.append("the suite passes under the newest releases")
    for test, packages in attributed.items():
        lines.append(f"FAILS {test}: caused by {', '.join(packages)}")
    lines += [f"FAILS {test}: only with several packages moved together (an interaction)" for test in unexplained]
    return "\n".join(lines)


def _run(*command: str | Path, check: bool = True) -> int:
    print("+", " ".join(map(str, command)), flush=True)
    return subprocess.run(list(map(str, command)), cwd=ROOT, check=check).returncode


def _venv(path: Path, lock: Path) -> Path:
    _run(sys.executable, "-m", "venv", "--clear", path)
    python = path / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "-r", lock)
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", ROOT)
    return python


def _pytest(python: Path, junit: Path, tests: Iterable[str] = ()) -> set[str]:
    _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests, check=False)
    return failed_tests(junit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "drift", help="folder for newest.lock, reports, venvs")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    newest_lock = out / "newest.lock"
    _run(sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", *RESOLVE, "--upgrade", "-o", newest_lock)
    locked, newest = pins((ROOT / "requirements.lock").read_text()), pins(newest_lock.read_text())
    changes = moved(locked, newest)
    failing = _pytest(_venv(out / "venv-newest", newest_lock), out / "newest.xml")
    failing_with: dict[str, set[str]] = {}
    if failing:
        python = _venv(out / "venv-locked", ROOT / "requirements.lock")
        for name, old, new in changes:
            if new is None:
                continue
            if _run(python, "-m", "pip", "install", "--quiet", "--no-deps", f"{name}=={new}", check=False) == 0:
                failing_with[name] = _pytest(python, out / f"only-{name}.xml", sorted(failing))
            if old is not None:
                _run(python, "-m", "pip", "install", "--quiet", "--no-deps", f"{name}=={old}", check=False)
    attributed, unexplained = attribute(failing, failing_with)
    text = report(changes, attributed, unexplained)
    (out / "drift.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
