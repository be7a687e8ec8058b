"""The ablations: the INT8 arms are the paper's (mapped onto the model's size), the prompt arms differ only in the text
fed to the model, and both commands run end to end (``-m slow``: they generate images)."""

from __future__ import annotations

import dataclasses
import re

from quantkit.ablate import RawPromptStudy, int8_arms, run_int8, run_prompts
from quantkit.study import Study, StudyConfig


def w2_ranking(layers: int) -> dict[str, list[str]]:
    """Most fragile first: a ranking that is not the layer order."""
    order = list(reversed(range(layers)))
    return {b: [f"layers.{i}.feed_forward.w2" for i in order] for b in ("transformer", "unconditional_transformer")}


def test_int8_arms_on_the_real_model_protect_8_17_and_34_of_34():
    arms = {a.name: a for a in int8_arms(w2_ranking(34))}
    assert [(n, a.smooth, a.protected) for n, a in arms.items()] == [
        ("naive", False, 0),
        ("smoothquant", True, 0),  # the ladder's k=0
        ("protect", False, 17),
        ("both", True, 17),  # the published recipe, and the ladder's k=1/2
        ("ladder k=1/4", True, 8),
        ("ladder k=all", True, 34),
    ]
    assert arms["naive"].recipe.alpha == 0.0 and arms["both"].recipe.alpha == 0.5
    protected = arms["both"].recipe.protect
    assert protected[:2] == ("transformer.layers.33.feed_forward.w2", "transformer.layers.32.feed_forward.w2")
    assert len(protected) == 34 and sum(p.startswith("unconditional_transformer.") for p in protected) == 17


def test_int8_arms_map_proportionally_onto_a_two_layer_model_without_duplicates():
    arms = {a.name: a.protected for a in int8_arms(w2_ranking(2))}
    assert arms == {"naive": 0, "smoothquant": 0, "protect": 1, "both": 1, "ladder k=all": 2}


def test_raw_prompt_arm_changes_only_the_text_fed_to_the_model():
    config = StudyConfig(variants=("fp8",), prompt_limit=4)
    captions, raw = Study(config).prompts, RawPromptStudy(config).prompts
    assert [p.caption for p in raw] == [p.raw for p in captions]
    same = [dataclasses.replace(p, caption="") for p in raw]
    assert same == [dataclasses.replace(p, caption="") for p in captions]


def test_int8_ablation_writes_its_table_and_ladder_plot(tmp_path):
    config = StudyConfig(variants=("fp8",), prompt_limit=2, metrics=("psnr",), cache_dir=str(tmp_path / "cache"))
    text = run_int8(config, out_dir=tmp_path / "out", n_resamples=1000, progress=False)
    assert {"naive", "smoothquant", "protect", "both", "ladder k=all"} <= {
        re.split(r"\s{2,}", line)[0]
        for line in text.splitlines()  # columns are separated by two or more spaces
    }
    assert (tmp_path / "out" / "ablate-int8.png").read_bytes().startswith(b"\x89PNG")
    assert "![protection ladder]" in (tmp_path / "out" / "ablate-int8.md").read_text()


def test_prompt_ablation_pairs_raw_and_json_per_variant(tmp_path):
    config = StudyConfig(
        variants=("fp8", "q8_0"), prompt_limit=2, metrics=("ocr_ned", "psnr"), cache_dir=str(tmp_path / "cache")
    )
    text = run_prompts(config, n_resamples=1000, progress=False)
    rows = [line.split()[:2] for line in text.splitlines()[1:]]
    assert rows == [["fp8", "ocr_ned"], ["q8_0", "ocr_ned"]]  # fidelity is not a prompt-arm metric
