"""The benchmark prompt set is valid, frozen under its version, and loads filtered and stratified."""

from __future__ import annotations

import collections
import hashlib
import json
import shutil

import pytest

from quantkit.errors import CaptionError, StoreError
from quantkit.prompts.authoring import build, read_source
from quantkit.prompts.benchmark import GOLDEN_PROMPTS, calibration_split, load_benchmark, read_entries, stratified
from quantkit.prompts.caption import canonical_json, parse, validate
from quantkit.prompts.expanders.base import ExpansionRequest, expand
from quantkit.prompts.expanders.template import TemplateExpander
from quantkit.prompts.prompt import seed_for

CATEGORIES = {
    "typography",
    "posters",
    "packaging",
    "apparel",
    "photo-scenes",
    "illustration",
    "art",
    "artifacts",
    "produce",
    "world-knowledge",
}


@pytest.fixture(scope="module")
def prompts_v1():
    return load_benchmark()


def test_benchmark_v1_has_300_prompts_in_ten_categories_with_stable_ids(prompts_v1):
    assert len(prompts_v1) == 300
    assert collections.Counter(p.category for p in prompts_v1) == {c: 30 for c in CATEGORIES}
    assert len({p.id for p in prompts_v1}) == 300
    assert prompts_v1[0].id == "typo-001" and prompts_v1[-1].id == "world-030"
    assert all(p.seed == seed_for(p.id) for p in prompts_v1)


def test_every_benchmark_caption_is_canonical_and_valid(prompts_v1):
    for prompt in prompts_v1:
        assert validate(prompt.caption) == [], prompt.id
        assert canonical_json(prompt.caption) == prompt.caption


def test_at_least_a_third_render_short_text_and_the_caption_renders_exactly_the_targets(prompts_v1):
    with_text = [p for p in prompts_v1 if p.texts]
    assert len(with_text) >= 100
    for prompt in with_text:
        assert 1 <= len(prompt.texts) <= 3
        assert all(0 < len(t) <= 20 and t == t.strip() for t in prompt.texts)
        assert all(f'"{t}"' in prompt.raw for t in prompt.texts)
        assert collections.Counter(parse(prompt.caption).texts) == collections.Counter(prompt.texts)
    assert any(not t.isascii() for p in with_text for t in p.texts)
    assert sum(t.isascii() for p in with_text for t in p.texts) > 0.9 * sum(len(p.texts) for p in with_text)


def test_prompts_without_targets_render_no_text(prompts_v1):
    for prompt in prompts_v1:
        if not prompt.texts:
            assert '"' not in prompt.raw and parse(prompt.caption).texts == ()


def test_captions_are_the_recorded_expanders_output_for_the_recorded_seed():
    entries = read_entries()
    template = TemplateExpander()
    for entry in entries[::7]:
        assert entry.expander == template.id
        p = entry.prompt
        assert expand(template, ExpansionRequest(p.raw, p.texts, p.seed, p.category)).to_json() == p.caption


def test_the_source_rebuilds_the_same_bytes(tmp_path):
    build(
        read_source(GOLDEN_PROMPTS / "sources" / "benchmark-v1.txt"),
        "benchmark-v1",
        TemplateExpander(),
        directory=tmp_path,
    )
    for name in ("benchmark-v1.jsonl", "benchmark-v1.manifest.json"):
        assert (tmp_path / name).read_bytes() == (GOLDEN_PROMPTS / name).read_bytes()


def test_categories_filter_and_limit_is_stratified_deterministic_and_includes_text(prompts_v1):
    assert {p.category for p in load_benchmark(categories=["art", "produce"])} == {"art", "produce"}
    assert len(load_benchmark(categories=["art"], limit=5)) == 5
    smoke = load_benchmark(limit=10)
    assert smoke == load_benchmark(limit=10)
    assert {p.category for p in smoke} == CATEGORIES
    assert sum(bool(p.texts) for p in smoke) >= 3
    eight = load_benchmark(limit=8)
    assert len({p.category for p in eight}) == 8 and sum(bool(p.texts) for p in eight) >= 2
    assert [p.id for p in smoke] == sorted((p.id for p in smoke), key=[q.id for q in prompts_v1].index)
    assert load_benchmark(limit=1000) == prompts_v1
    with pytest.raises(ValueError, match="unknown category 'sculpture'"):
        load_benchmark(categories=["sculpture"])
    with pytest.raises(ValueError, match=r"unknown category 'posterz' in benchmark-v1 \(did you mean 'posters'\?\)"):
        load_benchmark(categories=["posterz"])
    with pytest.raises(ValueError, match="positive number of prompts, got -1"):
        load_benchmark(limit=-1)


def test_the_calibration_split_depends_on_ids_and_categories_only(prompts_v1):
    split = calibration_split(prompts_v1)
    assert split == calibration_split(list(reversed(prompts_v1))) == load_benchmark(split="calibration")
    assert len(split) == 4 and len({p.category for p in split}) == 4
    assert [p.id for p in split] == sorted(p.id for p in split)


def test_stratified_takes_round_robin_until_categories_run_out(prompts_v1):
    few = [p for p in prompts_v1 if p.category == "art"][:2] + [p for p in prompts_v1 if p.category == "typography"]
    chosen = stratified(few, 6)
    assert collections.Counter(p.category for p in chosen) == {"art": 2, "typography": 4}


@pytest.fixture
def copied(tmp_path):
    for suffix in (".jsonl", ".manifest.json"):
        shutil.copy(GOLDEN_PROMPTS / f"benchmark-v1{suffix}", tmp_path / f"benchmark-v1{suffix}")
    return tmp_path / "benchmark-v1.jsonl"


def test_a_changed_file_without_a_new_version_is_an_error(copied):
    lines = copied.read_text(encoding="utf-8").splitlines(keepends=True)
    copied.write_text("".join(lines[:-1]), encoding="utf-8")
    with pytest.raises(StoreError, match="bump the version"):
        load_benchmark(copied)


def test_rewriting_an_existing_version_with_different_content_is_refused(copied):
    source = read_source(GOLDEN_PROMPTS / "sources" / "benchmark-v1.txt")[:3]
    with pytest.raises(StoreError, match="new version"):
        build(source, "benchmark-v1", TemplateExpander(), directory=copied.parent)
    assert load_benchmark(copied) == load_benchmark()
    path = build(source, "benchmark-v1-smoke", TemplateExpander(), directory=copied.parent)
    assert [p.id for p in load_benchmark(path)] == ["typo-001", "typo-002", "typo-003"]


def test_an_invalid_caption_is_reported_with_its_line_even_if_the_manifest_was_updated(copied):
    lines = copied.read_text(encoding="utf-8").splitlines(keepends=True)
    record = json.loads(lines[4])
    record["caption"]["compositional_deconstruction"]["elements"][0]["type"] = "shape"
    lines[4] = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    copied.write_text("".join(lines), encoding="utf-8")
    manifest_path = copied.with_name("benchmark-v1.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = hashlib.sha256(copied.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CaptionError, match=r"(?s)benchmark-v1\.jsonl:5 \(typo-005\).*element\.type"):
        load_benchmark(copied)


def test_a_missing_manifest_is_an_error(copied):
    copied.with_name("benchmark-v1.manifest.json").unlink()
    with pytest.raises(StoreError, match="manifest"):
        load_benchmark(copied)
