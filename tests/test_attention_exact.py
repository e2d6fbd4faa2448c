"""The span-reduced attention equals what eager output_attentions=True reports, for sdpa and eager models."""
from __future__ import annotations

import pytest
import torch
from attention_tiny import chat_tokenizer, render, sharpen, tiny_model

from sustain.eval.attention import constraint_char_span, locate_constraint, span_attention, token_span
from sustain.eval.attention.reduce import build_batch
from sustain.eval.errors import UserError

CONSTRAINT = "Answer in at most 50 words."
CASES = [  # (user text, system prompt or None for the template's default, output) of different lengths
    ("How many clips did Natalia sell? " + CONSTRAINT, "Be brief.", "She sold 48 / 2 = 24 clips in May."),
    ("Write a function. " + CONSTRAINT, None, "The answer is 72."),
    (CONSTRAINT + " Natalia sold clips to 48 of her friends in April. " + CONSTRAINT, None, "72 clips in total."),
]


@pytest.fixture(scope="module")
def tokenizer():
    return chat_tokenizer()


@pytest.fixture(scope="module")
def inputs(tokenizer):
    prompts = [render(tokenizer, user, system) for user, system, _ in CASES]
    return prompts, [out for *_, out in CASES], [constraint_char_span(p, CONSTRAINT) for p in prompts]


def eager_reference(model, input_ids, attention_mask=None, position_ids=None):
    eager = tiny_model(model.config.model_type, model.config.vocab_size, "eager")
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = eager(input_ids, attention_mask=attention_mask, position_ids=position_ids, output_attentions=True)
    return torch.stack(out.attentions)  # (layers, B, heads, T, T)


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("batch_size", [1, 3])  # 1: no padding (sdpa gets no mask); 3: left padding
def test_matches_unbatched_eager_attentions(tokenizer, inputs, kind, attn, batch_size):
    model = sharpen(tiny_model(kind, len(tokenizer), attn))
    prompts, outputs, spans = inputs
    results = span_attention(model, tokenizer, prompts, outputs, spans, batch_size=batch_size)
    for prompt, output, span, result in zip(prompts, outputs, spans, results):
        tokens = token_span(tokenizer, prompt, span)
        out_ids = tokenizer(output, add_special_tokens=False)["input_ids"]
        weights = eager_reference(model, torch.tensor([tokens.input_ids + out_ids]))[:, 0]
        p = len(tokens.input_ids)
        # step s is the query that produced output token s: position p - 1 + s
        expected = weights[:, :, p - 1 : p - 1 + len(out_ids), tokens.start : tokens.end].sum(-1).mean(1)
        assert torch.tensor(result["per_layer"]).shape == expected.shape
        torch.testing.assert_close(torch.tensor(result["per_layer"]), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.tensor(result["per_step"]), expected.mean(0), atol=1e-5, rtol=0)
        assert expected.std() > 1e-3  # peaked attention: the comparison is not between near-constant values


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_batch_matches_eager_on_the_same_left_padded_batch(tokenizer, inputs, kind):
    model = sharpen(tiny_model(kind, len(tokenizer), "sdpa", seed=3))
    prompts, outputs, spans = inputs
    results = span_attention(model, tokenizer, prompts, outputs, spans, batch_size=3)
    tokens = [token_span(tokenizer, p, s) for p, s in zip(prompts, spans)]
    out_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] for o in outputs]
    batch = build_batch(tokens, out_ids, tokenizer.pad_token_id)
    weights = eager_reference(model, batch.input_ids, batch.attention_mask, batch.position_ids)
    total = batch.input_ids.shape[1]
    for b, result in enumerate(results):
        rows = slice(total - len(out_ids[b]) - 1, total - 1)
        expected = (weights[:, b, :, rows] * batch.span_columns[b]).sum(-1).mean(1)
        torch.testing.assert_close(torch.tensor(result["per_layer"]), expected, atol=1e-5, rtol=0)


def test_batch_size_does_not_change_results(tokenizer, inputs):
    model = sharpen(tiny_model("llama", len(tokenizer), "sdpa"))
    together = span_attention(model, tokenizer, *inputs, batch_size=3)
    alone = span_attention(model, tokenizer, *inputs, batch_size=1)
    for a, b in zip(together, alone):
        torch.testing.assert_close(torch.tensor(a["per_layer"]), torch.tensor(b["per_layer"]), atol=1e-6, rtol=0)


def test_normalised_variants_and_sizes(tokenizer, inputs):
    model = tiny_model("qwen2", len(tokenizer), "sdpa")
    prompts, outputs, spans = inputs
    result = span_attention(model, tokenizer, prompts[:1], outputs[:1], spans[:1])[0]
    tokens = token_span(tokenizer, prompts[0], spans[0])
    steps = len(tokenizer(outputs[0], add_special_tokens=False)["input_ids"])
    assert result["span_tokens"] == len(tokens) and result["prompt_tokens"] == len(tokens.input_ids)
    assert result["context_tokens"] == [len(tokens.input_ids) + s for s in range(steps)]
    per_step = torch.tensor(result["per_step"])
    torch.testing.assert_close(torch.tensor(result["per_token_norm"]), per_step / len(tokens))
    fair_share = len(tokens) / torch.tensor(result["context_tokens"], dtype=per_step.dtype)
    torch.testing.assert_close(torch.tensor(result["share_norm"]), per_step / fair_share)


def test_model_is_left_as_it_was(tokenizer, inputs):
    model = tiny_model("qwen2", len(tokenizer), "sdpa").train()
    span_attention(model, tokenizer, *inputs)
    assert model.config._attn_implementation == "sdpa" and model.training


def test_empty_output_gives_empty_series(tokenizer, inputs):
    model = tiny_model("qwen2", len(tokenizer), "sdpa")
    prompts, outputs, spans = inputs
    results = span_attention(model, tokenizer, prompts[:2], ["", outputs[1]], spans[:2])
    assert results[0]["per_step"] == [] and results[0]["per_layer"] == [[], []]
    assert len(results[1]["per_step"]) > 0


def test_span_covers_exactly_the_constraint_tokens(tokenizer, inputs):
    prompt = inputs[0][2]  # the constraint occurs twice: the last occurrence is the appended one
    tokens = locate_constraint(tokenizer, prompt, CONSTRAINT)
    offsets = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    start, end = constraint_char_span(prompt, CONSTRAINT)
    assert start == prompt.rindex(CONSTRAINT) > prompt.index(CONSTRAINT)
    assert offsets[tokens.start][0] <= start < offsets[tokens.start][1]
    assert offsets[tokens.end - 1][0] < end <= offsets[tokens.end - 1][1]
    assert offsets[tokens.start - 1][1] <= start and offsets[tokens.end][0] >= end
    assert CONSTRAINT in tokenizer.decode(tokens.input_ids[tokens.start : tokens.end])


def test_constraint_missing_from_prompt_is_a_user_error(tokenizer, inputs):
    with pytest.raises(UserError, match="does not occur in the rendered prompt"):
        locate_constraint(tokenizer, inputs[0][0], "Answer in French.")
    model = tiny_model("qwen2", len(tokenizer), "sdpa")
    with pytest.raises(UserError, match="one output and one span per prompt"):
        span_attention(model, tokenizer, inputs[0], inputs[1][:1], inputs[2])
