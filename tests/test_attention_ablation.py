"""Scaling attention to the constraint changes generation only while enabled and only from step N on."""
from __future__ import annotations

import pytest
import torch
from attention_tiny import attention_dominated, chat_tokenizer, render, sharpen, tiny_model

from sustain.eval.attention import ablate_generate, constraint_char_span, locate_constraint, scaled_span_attention
from sustain.eval.errors import UserError

CONSTRAINT = "Answer in at most 50 words."
AFTER = 5
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def tokenizer():
    return chat_tokenizer()


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return render(tokenizer, "How many clips did Natalia sell? " + CONSTRAINT, system="Be brief.")


def greedy(model, input_ids):
    """Greedy ids and per-step logits; no EOS stop, so every run has NEW_TOKENS steps."""
    out = model.generate(
        input_ids, do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0,
        output_logits=True, return_dict_in_generate=True,
    )
    return out.sequences[0, input_ids.shape[1] :], torch.stack(out.logits)[:, 0]


def scaled(model, tokenizer, prompt, factor, layers=None, after_step=AFTER):
    span = locate_constraint(tokenizer, prompt, CONSTRAINT)
    ids = torch.tensor([span.input_ids])
    with scaled_span_attention(model, (span.start, span.end), len(span.input_ids), factor, layers, after_step):
        return greedy(model, ids)


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("factor", [0.0, 5.0])
def test_logits_change_only_from_step_n(tokenizer, prompt, kind, attn, factor):
    model = sharpen(tiny_model(kind, len(tokenizer), attn))
    ids = torch.tensor([locate_constraint(tokenizer, prompt, CONSTRAINT).input_ids])
    plain_tokens, plain_logits = greedy(model, ids)
    tokens, logits = scaled(model, tokenizer, prompt, factor)
    assert torch.equal(tokens[:AFTER], plain_tokens[:AFTER])
    torch.testing.assert_close(logits[:AFTER], plain_logits[:AFTER], atol=1e-5, rtol=0)
    # step AFTER sees the same prefix in both runs, so any change there comes from the scaling itself
    assert (logits[AFTER] - plain_logits[AFTER]).abs().max() > 1e-3


def test_disabled_or_neutral_scaling_is_plain_greedy(tokenizer, prompt):
    model = sharpen(tiny_model("llama", len(tokenizer), "sdpa"))
    ids = torch.tensor([locate_constraint(tokenizer, prompt, CONSTRAINT).input_ids])
    plain_tokens, plain_logits = greedy(model, ids)
    for factor, layers in ((1.0, None), (0.0, [])):  # neutral factor; strong factor on no layer
        tokens, logits = scaled(model, tokenizer, prompt, factor, layers)
        assert torch.equal(tokens, plain_tokens)
        torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=0)
    after_tokens, _ = greedy(model, ids)  # the context manager left nothing installed
    assert torch.equal(after_tokens, plain_tokens) and model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("factor", [0.0, 20.0])
def test_strong_scaling_changes_the_text_after_step_n(tokenizer, prompt, kind, factor):
    model = attention_dominated(tiny_model(kind, len(tokenizer), "sdpa"))
    ids = torch.tensor([locate_constraint(tokenizer, prompt, CONSTRAINT).input_ids])
    plain_tokens, _ = greedy(model, ids)
    tokens, _ = scaled(model, tokenizer, prompt, factor)
    differ = (tokens != plain_tokens).nonzero().flatten()
    assert len(differ) > 0 and differ[0] >= AFTER
    model.generation_config.eos_token_id = None  # run every step, as greedy() does
    span = constraint_char_span(prompt, CONSTRAINT)
    texts = {
        f: ablate_generate(model, tokenizer, prompt, span, factor=f, after_step=AFTER, max_new_tokens=NEW_TOKENS)
        for f in (1.0, factor)
    }
    assert texts[1.0] == tokenizer.decode(plain_tokens, skip_special_tokens=True)
    assert texts[factor] == tokenizer.decode(tokens, skip_special_tokens=True) != texts[1.0]


def test_one_layer_is_enough_to_change_step_n(tokenizer, prompt):
    model = sharpen(tiny_model("qwen2", len(tokenizer), "sdpa"))
    ids = torch.tensor([locate_constraint(tokenizer, prompt, CONSTRAINT).input_ids])
    _, plain_logits = greedy(model, ids)
    _, logits = scaled(model, tokenizer, prompt, 0.0, layers=[1])
    assert (logits[AFTER] - plain_logits[AFTER]).abs().max() > 1e-3


def test_bad_settings_are_user_errors(tokenizer, prompt):
    model = tiny_model("qwen2", len(tokenizer), "sdpa")
    span = constraint_char_span(prompt, CONSTRAINT)
    with pytest.raises(UserError, match="factor"):
        ablate_generate(model, tokenizer, prompt, span, factor=-1.0)
    with pytest.raises(UserError, match="do not exist"):
        ablate_generate(model, tokenizer, prompt, span, factor=0.5, layers=[7])
    flash = tiny_model("qwen2", len(tokenizer), "sdpa")
    flash.config._attn_implementation = "flex_attention"
    with pytest.raises(UserError, match="sdpa or eager"):
        ablate_generate(flash, tokenizer, prompt, span, factor=0.5)
