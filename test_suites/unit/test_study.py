"""A study generates each image once: a warm re-run reads images, calibration and scores back from the cache."""

import pytest

from quantkit import generation as cached
from quantkit.errors import QuantkitError
from quantkit.pipelines import ideogram4
from quantkit.report.build import build_report
from quantkit.study import Study, StudyConfig


def _config(cache_dir):
    return StudyConfig(
        variants=("fp8", "int8_w8a8"),
        metrics=("psnr", "ocr_ned"),
        prompt_limit=2,
        calibration_prompts=1,
        cache_dir=str(cache_dir),
    )


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    study = Study(_config(cache), progress=False)
    return cache, study, study.score_all()


def test_a_warm_rerun_generates_nothing(cold, monkeypatch):
    cache, _, table = cold

    def no_generation(*args, **kwargs):
        raise AssertionError("a warm re-run must not generate")

    monkeypatch.setattr(ideogram4, "generate", no_generation)
    monkeypatch.setattr(cached, "generate", no_generation)
    assert Study(_config(cache), progress=False).score_all() == table


def test_the_reference_gets_no_fidelity_scores_and_variants_get_one_per_prompt(cold):
    _, study, table = cold
    assert table.scores("fp8", "psnr") == {}
    assert set(table.scores("int8_w8a8", "psnr")) == {p.id for p in study.prompts}
    assert table.directions == {"psnr": "higher", "ocr_ned": "lower"}


def test_the_report_folder_holds_the_table_the_scores_and_the_image_grid(cold, tmp_path):
    _, study, _ = cold
    built = build_report(study, None, out_dir=tmp_path, n_resamples=200)
    page = built.index.read_text()
    assert "int8_w8a8" in built.table_text and "PSNR" in built.table_text
    assert page.count("data:image/png;base64,") >= 4  # two prompts x two variants
    assert (tmp_path / "scores.json").is_file() and (tmp_path / "report.md").is_file()


def test_a_shard_keeps_every_nth_prompt(tmp_path):
    whole = Study(StudyConfig(prompt_limit=10, cache_dir=str(tmp_path)), progress=False).prompts
    shards = [Study(StudyConfig(prompt_limit=10, shard=(i, 3), cache_dir=str(tmp_path))).prompts for i in (1, 2, 3)]
    assert sorted(p.id for s in shards for p in s) == sorted(p.id for p in whole)


def test_unknown_variants_and_bad_shards_are_refused():
    with pytest.raises(QuantkitError, match="unknown variant"):
        StudyConfig(variants=("fp8", "int4"))
    with pytest.raises(QuantkitError, match="shard 4/3"):
        StudyConfig(shard=(4, 3))


def test_for_model_gives_each_model_its_own_defaults_from_python(tmp_path, monkeypatch):
    monkeypatch.delenv("QUANTKIT_IDEOGRAM4_DIR", raising=False)
    real = StudyConfig.for_model(str(tmp_path), device="cpu")
    assert (real.preset, real.resolution, real.prompt_limit) == ("V4_QUALITY_48", (1024, 1024), None)
    assert real.gate_profile == "ideogram4"
    tiny = StudyConfig.for_model()
    assert (tiny.model, tiny.preset, tiny.resolution, tiny.prompt_limit) == ("tiny", "TINY_TEXT", (128, 128), 10)
    assert tiny.gate_profile == "tiny"
    assert StudyConfig.for_model("tiny-random").preset == "SMOKE"
    chosen = StudyConfig.for_model(str(tmp_path), preset="SMOKE", resolution=(64, 64), prompt_limit=None)
    assert (chosen.preset, chosen.resolution, chosen.prompt_limit) == ("SMOKE", (64, 64), None)
    monkeypatch.setenv("QUANTKIT_IDEOGRAM4_DIR", str(tmp_path))
    assert StudyConfig.for_model().model == str(tmp_path)
