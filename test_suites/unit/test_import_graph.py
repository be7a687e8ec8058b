"""The import direction of docs/architecture.md, checked: no cycle between quantkit modules and no import from a
lower layer to a higher one. Every ``import`` counts, at module level or inside a function (a function-level import
is a dependency all the same); only those under ``if TYPE_CHECKING:`` do not, since they never run."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "quantkit"

# (importer prefix, imported prefixes it must not reach): the layers of docs/architecture.md, from below.
FORBIDDEN = [
    ("quantkit.errors", ("quantkit.",)),
    ("quantkit.atomic", ("quantkit.codecs", "quantkit.nn", "quantkit.recipes", "quantkit.quantize")),
    ("quantkit.codecs", ("quantkit.nn", "quantkit.io", "quantkit.recipes", "quantkit.quantize", "quantkit.calibrate")),
    ("quantkit.nn", ("quantkit.recipes", "quantkit.quantize", "quantkit.calibrate", "quantkit.io")),
    ("quantkit.io", ("quantkit.nn", "quantkit.recipes", "quantkit.quantize", "quantkit.variants")),
    ("quantkit.calibrate", ("quantkit.recipes", "quantkit.quantize", "quantkit.variants", "quantkit.study")),
    ("quantkit.recipes", ("quantkit.quantize", "quantkit.variants", "quantkit.study", "quantkit.generation")),
    ("quantkit.quantize", ("quantkit.variants", "quantkit.study", "quantkit.generation", "quantkit.calibrate")),
    (
        "quantkit.pipelines",
        ("quantkit.quantize", "quantkit.recipes", "quantkit.variants", "quantkit.calibrate", "quantkit.store"),
    ),
    ("quantkit.pipelines", ("quantkit.generation", "quantkit.study")),
    ("quantkit.store", ("quantkit.pipelines", "quantkit.quantize", "quantkit.recipes", "quantkit.study")),
    ("quantkit.stats", ("quantkit.metrics", "quantkit.pipelines", "quantkit.quantize", "quantkit.study")),
    ("quantkit.metrics", ("quantkit.pipelines", "quantkit.quantize", "quantkit.recipes", "quantkit.study")),
]
# Nothing in the library imports the shells: the CLI, the plugin, ``python -m quantkit`` and the script that
# regenerates the README's example output from a real CLI run.
SHELLS = ("quantkit.cli", "quantkit.pytest_plugin", "quantkit.__main__", "quantkit.report.readme")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative.with_suffix(".py")).is_file() or (PACKAGE.parent / relative).is_dir()


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement except those in an ``if TYPE_CHECKING:`` block."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imports(path: Path, package: str | None = None) -> set[str]:
    """The quantkit modules ``path`` imports (``from quantkit.x import y`` names module ``quantkit.x.y`` when it
    is one, else ``quantkit.x``); ``package``: the one relative imports start from (default: the file's own)."""
    if package is None:
        package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative import
            base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])])
        for alias in node.names:
            full = f"{base}.{alias.name}"
            names.add(full if _exists(full) else base)
    return {n for n in names if n == "quantkit" or n.startswith("quantkit.")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_import_cycle_between_quantkit_modules(graph):
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


@pytest.mark.parametrize(("importer", "forbidden"), FORBIDDEN, ids=[f"{a}" for a, _ in FORBIDDEN])
def test_no_import_against_the_layer_direction(graph, importer, forbidden):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module == importer or module.startswith(importer + ".")
        for target in targets
        if any(target == f.rstrip(".") or target.startswith(f.rstrip(".") + ".") for f in forbidden)
    )
    assert not wrong, "; ".join(wrong)


def test_the_library_never_imports_its_shells(graph):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not module.startswith(SHELLS)
        for target in targets
        if target.startswith(SHELLS)
    )
    assert not wrong, "; ".join(wrong)


def test_the_checker_sees_function_level_imports_and_ignores_type_checking_ones(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from quantkit.study import Study\n"
        "def f():\n    from quantkit.codecs import nf4\n    from . import quantize\n"
    )
    assert _imports(source, package="quantkit") == {"quantkit.codecs.nf4", "quantkit.quantize"}
