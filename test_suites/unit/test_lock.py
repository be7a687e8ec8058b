"""The lock every machine installs from: complete, hashed, within pyproject's ranges, and a drift report that
names the package behind each failure."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from ci import drift
from quantkit import environment

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras if not r.startswith("quantkit")]


def test_every_declared_dependency_is_pinned_with_hashes_and_within_its_range():
    text, pinned = LOCK.read_text(), environment.pins(LOCK.read_text())
    for requirement in declared():
        name = environment.normalize(requirement.name)
        assert name in pinned, f"{requirement.name} is declared in pyproject.toml but not pinned: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} in the lock is outside pyproject's {requirement.specifier}: run `make lock`"
        )
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text):
        if environment.LOCK_PIN.match(block):
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_the_held_back_releases_are_the_locked_ones():
    constraints = environment.pins((ROOT / "ci" / "lock-constraints.txt").read_text())
    assert constraints, "ci/lock-constraints.txt holds nothing back"
    locked = environment.pins(LOCK.read_text())
    assert {name: locked.get(name) for name in constraints} == constraints


def test_lock_drift_names_each_package_installed_at_another_release(tmp_path):
    lock = tmp_path / "requirements.lock"
    torch_version = environment.installed_version("torch")
    lock.write_text(f"torch=={torch_version.split('+')[0]} \\\n    --hash=sha256:00\nnumpy==0.0.1 \\\n")
    drifted = environment.lock_drift(lock, packages=("torch", "numpy", "not-installed-anywhere"))
    assert drifted == [("numpy", "0.0.1", environment.installed_version("numpy"))]


def test_drift_lists_what_moved_and_attributes_each_failure(tmp_path):
    locked = environment.pins("torch==2.14.1 \\\n    --hash=sha256:aa\nTransformers==5.23.0\nsix==1.17.0\n")
    newest = environment.pins("torch==2.15.0\ntransformers==5.24.0\nsix==1.17.0\nnew-dep==1.0\n")
    changes = drift.moved(locked, newest)
    assert changes == [("new-dep", None, "1.0"), ("torch", "2.14.1", "2.15.0"), ("transformers", "5.23.0", "5.24.0")]
    failing = {"a.py::test_golden", "b.py::test_rebuild", "c.py::test_both"}
    attributed, unexplained = drift.attribute(
        failing, {"torch": {"a.py::test_golden"}, "transformers": {"b.py::test_rebuild"}, "new-dep": set()}
    )
    assert attributed == {"a.py::test_golden": ["torch"], "b.py::test_rebuild": ["transformers"]}
    assert unexplained == ["c.py::test_both"]
    text = drift.report(changes, attributed, unexplained)
    assert "torch: 2.14.1 -> 2.15.0" in text and "FAILS a.py::test_golden: caused by torch" in text
    assert "FAILS c.py::test_both: only with several packages moved together" in text


def test_failed_tests_are_read_from_junit_xml(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="test_suites.unit.test_x" name="test_ok"/>'
        '<testcase classname="test_suites.unit.test_x" name="test_bad[1]"><failure message="x"/></testcase>'
        '<testcase classname="test_suites.unit.test_y" name="test_err"><error message="y"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert drift.failed_tests(report) == {
        "test_suites/unit/test_x.py::test_bad[1]",
        "test_suites/unit/test_y.py::test_err",
    }
    assert drift.failed_tests(tmp_path / "missing.xml") == set()


@pytest.mark.parametrize("name", ["Open_Clip.Torch", "open-clip-torch", "OPEN__CLIP-torch"])
def test_package_names_are_compared_as_pep_503_normalises_them(name):
    assert environment.normalize(name) == "open-clip-torch"
