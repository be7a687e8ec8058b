"""A study's image keys change exactly where the pixels can: a new calibration misses only INT8's images, an edit
to one codec only its variant's, an edit to the generation code every image. INT8 is calibrated on a fixed split
of the prompt set that no study evaluates, so every shard and every prompt order builds the same INT8 model."""

import hashlib
import shutil

import pytest
import torch

from quantkit import generation as cached
from quantkit.prompts.benchmark import GOLDEN_PROMPTS, load_benchmark, write_manifest
from quantkit.study import Study, StudyConfig

VARIANTS = ("fp8", "int8_w8a8", "q4_k")


def _config(cache, **changes):
    fields = dict(variants=VARIANTS, metrics=("psnr",), prompt_limit=2, calibration_prompts=1, resolution=(64, 64))
    fields["cache_dir"] = str(cache)
    return StudyConfig(**{**fields, **changes})


def _keys(study):
    return {name: study.image_keys(name) for name in study.config.variants}


def _missed(before, after):
    """The variants whose every image key changed (a key that changed for only some prompts fails the test)."""
    changed = {name: {pid for pid in before[name] if before[name][pid] != after[name][pid]} for name in before}
    assert all(ids in (set(), set(before[name])) for name, ids in changed.items()), changed
    return sorted(name for name, ids in changed.items() if ids)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    study = Study(_config(tmp_path_factory.mktemp("cache")), progress=False)
    return study, _keys(study)


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    copy = tmp_path / "quantkit"
    shutil.copytree(cached.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cached, "PACKAGE_ROOT", copy)
    cached.quantizer_version.cache_clear()
    yield copy
    cached.quantizer_version.cache_clear()


def test_nothing_changed_misses_nothing(base):
    study, keys = base
    assert _missed(keys, _keys(Study(study.config, progress=False))) == []


def test_a_runner_with_an_empty_cache_recalibrates_to_the_same_keys(base, tmp_path):
    """What makes an unchanged pull request cost 0 images: main's runner and the branch's calibrate separately."""
    _, keys = base
    fresh = Study(_config(tmp_path / "fresh-cache"), progress=False)
    assert _missed(keys, _keys(fresh)) == []


def test_another_calibration_misses_only_the_int8_images(base):
    study, keys = base
    recalibrated = Study(_config(study.config.cache_dir, calibration_prompts=2), progress=False)
    assert _missed(keys, _keys(recalibrated)) == ["int8_w8a8"]


def test_an_edit_to_one_codec_misses_only_its_variants_images(base, package_copy):
    study, keys = base
    (package_copy / "codecs" / "q4_k.py").write_text((package_copy / "codecs" / "q4_k.py").read_text() + "\n#\n")
    assert _missed(keys, _keys(study)) == ["q4_k"]


def test_an_edit_to_the_generation_code_misses_every_image(base, package_copy):
    study, keys = base
    adapter = package_copy / "pipelines" / "ideogram4.py"
    adapter.write_text(adapter.read_text().replace("manual_seed(prompt.seed)", "manual_seed(prompt.seed + 1)"))
    assert _missed(keys, _keys(study)) == list(VARIANTS)


def _int8_weights_hash(config):
    digest = hashlib.sha256()
    pipe = Study(config, progress=False).variant("int8_w8a8").pipeline
    for branch in ("transformer", "unconditional_transformer"):
        for name, tensor in sorted(getattr(pipe, branch).state_dict().items()):
            digest.update(name.encode() + tensor.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def test_the_calibration_split_is_never_evaluated_whatever_the_subset_or_shard():
    reserved = {p.id for p in load_benchmark(split="calibration")}
    assert len(reserved) == 4
    for limit in (10, 100, None):
        assert reserved.isdisjoint(p.id for p in load_benchmark(limit=limit, split="evaluation"))
    assert reserved | {p.id for p in load_benchmark(split="evaluation")} == {p.id for p in load_benchmark()}


def test_every_shard_and_prompt_order_builds_the_same_int8_model(tmp_path):
    reordered = tmp_path / "benchmark-v1-reversed.jsonl"
    lines = (GOLDEN_PROMPTS / "benchmark-v1.jsonl").read_text().splitlines(keepends=True)
    reordered.write_text("".join(reversed(lines)))
    write_manifest(reordered)
    config = dict(variants=("fp8", "int8_w8a8"), metrics=("psnr",), prompt_limit=4, calibration_prompts=1)
    config["resolution"] = (64, 64)
    whole = _int8_weights_hash(StudyConfig(**config, cache_dir=str(tmp_path / "ci")))
    # shards share the persistent CI cache, as on the runners; the reordered set calibrates from scratch in its own
    shards = [_int8_weights_hash(StudyConfig(**config, shard=(i, 2), cache_dir=str(tmp_path / "ci"))) for i in (1, 2)]
    flipped = _int8_weights_hash(StudyConfig(**config, prompts=str(reordered), cache_dir=str(tmp_path / "fresh")))
    assert shards == [whole, whole] and flipped == whole


def test_keys_are_known_without_calibrating_or_quantizing_and_are_the_keys_images_are_stored_under(tmp_path):
    """A merge gate asks every variant's keys and builds only the changed ones: asking must not calibrate INT8
    (minutes of generation on real weights), and must give exactly the keys the generated images carry."""
    study = Study(_config(tmp_path / "cache"), progress=False)
    asked = _keys(study)
    assert study.calibration_images == 0 and not study._variants
    for name in VARIANTS:
        assert {pid: g.key for pid, g in study.images(name).items()} == asked[name]
    assert study.calibration_images == 1  # calibration_prompts=1, calibrated once for INT8's images
