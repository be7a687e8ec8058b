"""The image key covers everything that can change a pixel, one part at a time: the quantizer code a variant runs
(and only that variant's), the generation code path (adapter, diffusers pipeline, sampler, models), the
calibration (in ``test_study``), the weights, caption, seed, sampler, resolution and runtime (in ``test_cache``)."""

import ast
import shutil

import pytest

from quantkit.pipelines import cached
from quantkit.pipelines.ideogram4 import load_pipeline

PACKAGE = cached.PACKAGE_ROOT
NOT_PIXELS = {"errors.py", "atomic.py"}  # messages and file writing: they never change a pixel
# The calibration run generates images: its code is keyed through the calibration identity, whose inputs include
# the generation code and the prompts.
KEYED_BY_CALIBRATION = {"pipelines/ideogram4.py", "prompts/prompt.py"}


def _quantkit_imports(path):
    """The package-relative files a module imports from quantkit (``from quantkit.x import y`` / ``import``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("quantkit"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("quantkit"))
    files = set()
    for name in names:
        relative = name.removeprefix("quantkit").strip(".").replace(".", "/")
        for candidate in (PACKAGE / f"{relative}.py", PACKAGE / relative / "__init__.py"):
            if relative and candidate.is_file():
                files.add(candidate.relative_to(PACKAGE).as_posix())
    return files


def test_every_quantizer_file_is_keyed_for_some_format():
    listed = {
        p.relative_to(PACKAGE).as_posix()
        for names in [cached.QUANTIZER_COMMON, *cached.QUANTIZER_SOURCES.values()]
        for p in cached.source_files(names)
    }
    present = {
        p.relative_to(PACKAGE).as_posix() for d in ("codecs", "nn", "calibrate") for p in (PACKAGE / d).glob("*.py")
    }
    assert present - listed == set(), "list new quantizer files in quantkit.pipelines.cached.QUANTIZER_SOURCES"


@pytest.mark.parametrize("fmt", sorted(cached.QUANTIZER_SOURCES))
def test_a_formats_own_files_import_only_common_code_and_their_own(fmt):
    common = {p.relative_to(PACKAGE).as_posix() for p in cached.source_files(cached.QUANTIZER_COMMON)}
    own = {p.relative_to(PACKAGE).as_posix() for p in cached.source_files(cached.QUANTIZER_SOURCES[fmt])}
    for path in sorted(own):
        outside = _quantkit_imports(PACKAGE / path) - common - own - NOT_PIXELS - KEYED_BY_CALIBRATION
        assert not outside, f"{path} ({fmt}) runs {sorted(outside)}: add it to the format's QUANTIZER_SOURCES"


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the quantkit package that the key functions read instead of the real one."""
    copy = tmp_path / "quantkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cached, "PACKAGE_ROOT", copy)
    cached.quantizer_version.cache_clear()
    yield copy
    cached.quantizer_version.cache_clear()


def _edit(path):
    path.write_text(path.read_text() + "\n# an edit\n")


def test_editing_one_codec_changes_only_that_formats_quantizer_key(package_copy):
    before = {fmt: cached.quantizer_version(fmt) for fmt in cached.QUANTIZER_SOURCES}
    _edit(package_copy / "codecs" / "q4_k.py")
    cached.quantizer_version.cache_clear()
    after = {fmt: cached.quantizer_version(fmt) for fmt in cached.QUANTIZER_SOURCES}
    assert [fmt for fmt in before if before[fmt] != after[fmt]] == ["q4_k"]


def test_editing_shared_quantizer_code_changes_every_formats_key(package_copy):
    before = {fmt: cached.quantizer_version(fmt) for fmt in cached.QUANTIZER_SOURCES}
    _edit(package_copy / "quantize.py")
    cached.quantizer_version.cache_clear()
    assert all(cached.quantizer_version(fmt) != before[fmt] for fmt in before)


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny")


def test_the_generation_code_path_names_the_adapter_pipeline_sampler_and_models(pipe):
    names = {p.name for p in cached.generation_sources(pipe)}
    assert {"ideogram4.py", "pipeline_ideogram4.py", type(pipe.scheduler).__module__.rsplit(".", 1)[1] + ".py"} <= names
    assert type(pipe.transformer).__module__.rsplit(".", 1)[1] + ".py" in names


def test_editing_the_pipeline_adapter_changes_the_generation_key(pipe, package_copy):
    before = cached.generation_code_version(pipe)
    _edit(package_copy / "pipelines" / "ideogram4.py")
    assert cached.generation_code_version(pipe) != before
