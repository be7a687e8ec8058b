"""Expanders return only valid captions: repaired or retried a bounded number of times, else one clear error."""

from __future__ import annotations

import collections
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from quantkit.errors import CaptionError, MissingWeightsError, StoreError
from quantkit.prompts.caption import parse, validate
from quantkit.prompts.expanders.base import Expander, ExpansionCache, ExpansionRequest, expand, repair
from quantkit.prompts.expanders.ideogram4 import Ideogram4Expander, enhancer_prompt
from quantkit.prompts.expanders.template import LOOKS, TemplateExpander, build_caption
from quantkit.prompts.expanders.transformers_chat import SYSTEM_PROMPT, TransformersChatExpander

VALID = {"compositional_deconstruction": {"background": "a wall", "elements": [{"type": "obj", "desc": "a cat"}]}}
SIGN = ExpansionRequest(
    'a wooden sign reading "FRESH EGGS" at a farm gate', ("FRESH EGGS",), seed=7, category="typography"
)


class Scripted(Expander):
    """Returns the given outputs in turn and records what it was shown."""

    id = "scripted"

    def __init__(self, *outputs):
        self.outputs = list(outputs)
        self.previous = []

    def propose(self, request, attempt, previous):
        self.previous.append(previous)
        return self.outputs[min(attempt, len(self.outputs) - 1)]


# -- the template expander -------------------------------------------------------------------------------------


def test_template_is_deterministic_per_seed():
    assert TemplateExpander().propose(SIGN, 0, None) == TemplateExpander().propose(SIGN, 2, None)
    assert expand(TemplateExpander(), SIGN).to_json() == expand(TemplateExpander(), SIGN).to_json()


def test_template_varies_style_palette_and_layout_across_seeds():
    captions = [build_caption(ExpansionRequest(SIGN.raw, SIGN.texts, seed, SIGN.category)) for seed in range(40)]
    assert len({json.dumps(c) for c in captions}) == 40
    assert len({c["style_description"]["medium"] for c in captions}) >= 3
    assert len({c["style_description"]["aesthetics"] for c in captions}) >= 5
    assert len({tuple(c["style_description"].get("color_palette", ())) for c in captions}) >= 6
    with_boxes = [c for c in captions if "bbox" in c["compositional_deconstruction"]["elements"][0]]
    assert 0 < len(with_boxes) < len(captions)
    assert len({len(c["compositional_deconstruction"]["elements"]) for c in captions}) >= 2


def test_template_looks_follow_the_category():
    for category, looks in LOOKS.items():
        media = {look.medium for look in looks}
        for seed in range(6):
            caption = build_caption(ExpansionRequest("a small still life", (), seed, category))
            assert caption["style_description"]["medium"] in media


@given(
    raw=st.text(min_size=1, max_size=80).filter(str.strip),
    texts=st.lists(
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789É&-", min_size=1, max_size=16).filter(str.strip), max_size=3
    ),
    seed=st.integers(0, 2**31 - 1),
    category=st.sampled_from([*LOOKS, None, "unknown-category"]),
)
def test_template_captions_are_valid_and_render_exactly_the_texts(raw, texts, seed, category):
    caption = expand(TemplateExpander(), ExpansionRequest(raw, tuple(texts), seed, category))
    assert collections.Counter(caption.texts) == collections.Counter(texts)


def test_template_subject_description_leaves_the_quoted_words_to_text_elements():
    caption = expand(TemplateExpander(), SIGN)
    (subject,) = [e for e in caption.elements if e.desc.startswith("A wooden sign")]
    assert "FRESH EGGS" not in subject.desc and "at a farm gate" in subject.desc


# -- the repair / retry loop -----------------------------------------------------------------------------------


def test_near_miss_output_is_repaired_without_a_retry():
    near_miss = {
        "compositional_deconstruction": {
            "elements": [{"desc": "a cat", "type": "obj", "color_palette": ["#ab12cd"]}],
            "background": "a wall",
        },
        "high_level_description": "A cat.",
    }
    scripted = Scripted("Sure! Here it is:\n```json\n" + json.dumps(near_miss) + "\n```")
    caption = expand(scripted, ExpansionRequest("a cat"))
    assert scripted.previous == [None]
    assert caption.elements[0].color_palette == ("#AB12CD",)
    assert validate(repair(scripted.outputs[0])) == []


def test_invalid_output_is_retried_with_the_findings_fed_back():
    scripted = Scripted("not json at all", {"compositional_deconstruction": {"background": ""}}, VALID)
    caption = expand(scripted, ExpansionRequest("a cat"), max_attempts=3)
    assert caption == parse(VALID)
    first, second, third = scripted.previous
    assert first is None
    assert second.output == "not json at all" and second.findings[0].rule == "json.syntax"
    assert {f.rule for f in third.findings} == {"value.empty", "key.missing"}


def test_a_model_that_never_succeeds_gets_a_bounded_number_of_tries_and_one_clear_error():
    scripted = Scripted("{broken")
    with pytest.raises(CaptionError) as info:
        expand(scripted, ExpansionRequest("a cat", seed=3), max_attempts=4)
    assert len(scripted.previous) == 4
    message = str(info.value)
    assert "'scripted'" in message and "4 attempt(s)" in message and "json.syntax" in message and "seed 3" in message


def test_a_caption_that_drops_or_adds_a_requested_string_is_rejected():
    wrong_text = {
        "compositional_deconstruction": {
            "background": "a gate",
            "elements": [{"type": "text", "text": "FRESH EGG", "desc": "painted letters"}],
        }
    }
    with pytest.raises(CaptionError, match=r"expansion\.texts"):
        expand(Scripted(wrong_text), SIGN, max_attempts=2)


# -- the expansion cache ---------------------------------------------------------------------------------------


def test_cached_expansions_are_frozen_and_keyed_by_expander_raw_texts_and_seed(tmp_path):
    cache = ExpansionCache(tmp_path / "expansions.json")
    first = expand(Scripted(VALID), ExpansionRequest("a cat", seed=1), cache=cache)
    never_called = Scripted("{broken")
    assert expand(never_called, ExpansionRequest("a cat", seed=1), cache=ExpansionCache(cache.path)) == first
    assert never_called.previous == []
    keys = {
        ExpansionCache.key("scripted", ExpansionRequest("a cat", seed=1)),
        ExpansionCache.key("scripted", ExpansionRequest("a cat", seed=2)),
        ExpansionCache.key("other", ExpansionRequest("a cat", seed=1)),
        ExpansionCache.key("scripted", ExpansionRequest("a dog", seed=1)),
        ExpansionCache.key("scripted", ExpansionRequest("a cat", ("CAT",), seed=1)),
    }
    assert len(keys) == 5
    (entry,) = json.loads(cache.path.read_text()).values()
    assert entry["attempts"] == 1 and entry["caption"] == first.to_json()


def test_a_cache_hit_does_not_call_the_model(tmp_path):
    cache = ExpansionCache(tmp_path / "expansions.json")
    expand(Scripted(VALID), ExpansionRequest("a cat"), cache=cache)
    model = Scripted("{broken")
    expand(model, ExpansionRequest("a cat"), cache=cache)
    assert model.previous == []


def test_a_cached_entry_that_no_longer_validates_is_an_error_not_stale_input(tmp_path):
    cache = ExpansionCache(tmp_path / "expansions.json")
    expand(Scripted(VALID), ExpansionRequest("a cat"), cache=cache)
    entries = json.loads(cache.path.read_text())
    for entry in entries.values():
        entry["caption"] = entry["caption"].replace('"a wall"', "3")  # a background must be a string
    cache.path.write_text(json.dumps(entries))
    with pytest.raises(StoreError, match="no longer a valid caption"):
        expand(Scripted(VALID), ExpansionRequest("a cat"), cache=cache)
    cache.path.write_text("{truncated")
    with pytest.raises(StoreError, match="unreadable"):
        expand(Scripted(VALID), ExpansionRequest("a cat"), cache=cache)


# -- tiny local models for the model-backed expanders ----------------------------------------------------------

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_chat_tokenizer():
    """A byte-level BPE tokenizer with a chat template, trained on the system prompts so they tokenize short."""
    from diffusers.pipelines.ideogram4.prompt_enhancer import CAPTION_SYSTEM_MESSAGE
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([SYSTEM_PROMPT, CAPTION_SYSTEM_MESSAGE, json.dumps(VALID)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
}


@pytest.fixture(scope="module")
def tiny_chat_model_dir(tmp_path_factory):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    path = tmp_path_factory.mktemp("tiny-qwen3-chat")
    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(tokenizer), max_position_embeddings=8192, **TINY_TEXT)
    Qwen3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_transformers_expander_loads_a_local_chat_model_and_bounds_its_retries(tiny_chat_model_dir, monkeypatch):
    expander = TransformersChatExpander.from_pretrained(tiny_chat_model_dir, max_new_tokens=12)
    assert expander.id == "transformers:tiny-qwen3-chat0:sys-v1:t0.7"
    seen = []
    original = expander.tokenizer.apply_chat_template
    monkeypatch.setattr(
        expander.tokenizer,
        "apply_chat_template",
        lambda messages, **kw: seen.append(messages) or original(messages, **kw),
    )
    with pytest.raises(CaptionError, match="2 attempt"):
        expand(expander, SIGN, max_attempts=2)
    first, second = seen
    assert [m["role"] for m in first] == ["system", "user"]
    assert '["FRESH EGGS"]' in first[1]["content"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert "not valid" in second[3]["content"]


def test_transformers_expander_needs_a_local_model_directory(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"config\.json"):
        TransformersChatExpander.from_pretrained(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def tiny_ideogram4_dir(tmp_path_factory):
    """A complete tiny Ideogram4Pipeline (real diffusers classes) with its prompt-enhancer head, saved to disk."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Ideogram4Pipeline,
        Ideogram4PromptEnhancerHead,
    )
    from transformers import Qwen3VLConfig, Qwen3VLModel

    from quantkit.pipelines.tiny import tiny_transformer

    path = tmp_path_factory.mktemp("tiny-ideogram4")
    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(0)
    text_config = {
        **TINY_TEXT,
        "vocab_size": len(tokenizer),
        "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
    }
    vision_config = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32}
    encoder = Qwen3VLModel(Qwen3VLConfig(text_config=text_config, vision_config=vision_config)).eval()
    vae = AutoencoderKLFlux2(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    )
    pipe = Ideogram4Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=tiny_transformer(seed=1),
        unconditional_transformer=tiny_transformer(seed=2),
        prompt_enhancer_head=Ideogram4PromptEnhancerHead(hidden_size=32, vocab_size=len(tokenizer)),
    )
    pipe.save_pretrained(path)
    return path


def test_ideogram4_expander_runs_the_pipelines_prompt_enhancer_and_bounds_its_retries(tiny_ideogram4_dir):
    expander = Ideogram4Expander.from_pretrained(tiny_ideogram4_dir, dtype=torch.float32, max_new_tokens=12)
    assert expander.id.startswith("ideogram4:") and expander.id.endswith(":1024x1024:t1")
    outputs = []
    original = expander.pipe.upsample_prompt
    expander.pipe.upsample_prompt = lambda *a, **kw: outputs.append(original(*a, **kw)) or outputs[-1]
    with pytest.raises(CaptionError, match="2 attempt"):
        expand(expander, SIGN, max_attempts=2)
    assert len(outputs) == 2 and all(isinstance(o, list) and len(o) == 1 for o in outputs)


def test_ideogram4_expander_needs_the_prompt_enhancer_head(tiny_ideogram4_dir, tmp_path):
    with pytest.raises(MissingWeightsError, match="prompt_enhancer_head"):
        Ideogram4Expander.from_pretrained(tiny_ideogram4_dir, head_path=tmp_path / "no-head")


def test_ideogram4_prompt_quotes_every_requested_string_once():
    assert enhancer_prompt(SIGN) == SIGN.raw
    assert enhancer_prompt(ExpansionRequest("a mug.", ("HELLO", "WORLD"))) == 'a mug, with the text "HELLO" and "WORLD"'
