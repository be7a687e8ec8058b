"""The image key covers everything that can change a pixel, one part at a time: the quantizer code a variant runs
(and only that variant's, as the variant registry declares it), the generation code path (adapter, diffusers
pipeline, sampler, models), the calibration (in ``test_study``), the weights, caption, seed, sampler, resolution and
runtime (in ``test_cache``)."""

import ast
import shutil

import pytest

from quantkit import generation as cached
from quantkit import gguf_variant
from quantkit.pipelines.ideogram4 import load_pipeline
from quantkit.recipes import known_variants
from quantkit.recipes.registry import COMMON_SOURCES

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


VARIANTS = [*known_variants(), gguf_variant.PREFIX]  # every registered variant and the gguf: file sets


def _files(names):
    return {p.relative_to(PACKAGE).as_posix() for p in cached.source_files(names)}


def test_every_quantizer_file_is_claimed_by_some_variant_or_the_common_list():
    claimed = _files(COMMON_SOURCES) | {f for v in VARIANTS for f in _files(cached.quantizer_sources(v))}
    present = {
        p.relative_to(PACKAGE).as_posix()
        for d in ("codecs", "nn", "calibrate", "recipes")
        for p in (PACKAGE / d).glob("*.py")
    }
    assert present - claimed == set(), "list new quantizer files in their variant's VariantSpec.sources"


def test_every_listed_source_exists():
    for name in [*COMMON_SOURCES, *(n for v in VARIANTS for n in cached.quantizer_sources(v))]:
        assert (PACKAGE / name).exists(), f"{name} is listed as quantizer source but does not exist"


@pytest.mark.parametrize("name", VARIANTS)
def test_a_variants_own_files_import_only_common_code_and_their_own(name):
    common, own = _files(COMMON_SOURCES), _files(cached.quantizer_sources(name)) - _files(COMMON_SOURCES)
    for path in sorted(own):
        outside = _quantkit_imports(PACKAGE / path) - common - own - NOT_PIXELS - KEYED_BY_CALIBRATION
        assert not outside, f"{path} ({name}) runs {sorted(outside)}: add it to the variant's sources"


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


def _keys():
    cached.quantizer_version.cache_clear()
    return {variant: cached.quantizer_version(variant) for variant in VARIANTS}


@pytest.mark.parametrize(
    ("edited", "changed"),
    [
        ("codecs/q4_k.py", {"q4_k", "gguf:"}),  # gguf: file sets import the codec's block constants
        ("codecs/nf4.py", {"nf4", "gguf:"}),
        ("codecs/int8.py", {"int8_w8a8"}),
        ("codecs/fp8_e4m3.py", {"fp8"}),
        ("recipes/int8_w8a8.py", {"int8_w8a8"}),
        ("calibrate/stats.py", {"int8_w8a8"}),
        ("recipes/gguf.py", {"q4_k", "q8_0"}),
    ],
)
def test_editing_one_variants_code_changes_only_that_variants_quantizer_key(package_copy, edited, changed):
    before = _keys()
    _edit(package_copy / edited)
    after = _keys()
    assert {v for v in VARIANTS if before[v] != after[v]} == changed


def test_editing_shared_quantizer_code_changes_every_variants_key(package_copy):
    before = _keys()
    _edit(package_copy / "quantize.py")
    after = _keys()
    assert all(after[v] != before[v] for v in VARIANTS)


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
