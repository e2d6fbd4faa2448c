"""A model built to look at the constraint scores higher than the same model built to look away from it."""
from __future__ import annotations

import pytest
import torch
from attention_tiny import chat_tokenizer, render, tiny_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from sustain.eval.attention import constraint_char_span, locate_constraint, span_attention

CONSTRAINT = "Use exactly three sentences."
SIGNAL_DIM = 3  # a head dimension whose RoPE pair barely rotates when rope_theta is huge


def planted_model(tokenizer, span_ids: set[int], toward: bool):
    """Span tokens carry a marker in embedding dim 0; every key head reads it into SIGNAL_DIM and every
    query head has a constant bias there, +20 (toward the span) or -20 (away from it)."""
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e9},
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        embed = model.model.embed_tokens.weight
        embed[:, 0] = 0.0
        embed[sorted(span_ids), 0] = 1.0
        for layer in model.model.layers:
            attn = layer.self_attn
            head_dim = attn.head_dim
            attn.k_proj.weight[:, 0] = 0.0
            attn.q_proj.bias.zero_()
            for h in range(config.num_key_value_heads):
                attn.k_proj.weight[h * head_dim + SIGNAL_DIM, 0] = 1.0
            for h in range(config.num_attention_heads):
                attn.q_proj.bias[h * head_dim + SIGNAL_DIM] = 20.0 if toward else -20.0
    return model


@pytest.mark.parametrize("metric", ["per_step", "share_norm"])
def test_planted_attention_toward_the_span_scores_higher(metric):
    tokenizer = chat_tokenizer()
    prompt = render(tokenizer, "Write a function that returns the sum of a list. " + CONSTRAINT)
    output = "Here is the function. It adds each item. It returns the total."
    span = locate_constraint(tokenizer, prompt, CONSTRAINT)
    span_ids = set(span.input_ids[span.start : span.end])
    results = {
        toward: span_attention(
            planted_model(tokenizer, span_ids, toward), tokenizer, [prompt], [output], [constraint_char_span(prompt, CONSTRAINT)]
        )[0]
        for toward in (True, False)
    }
    toward, away = torch.tensor(results[True][metric]), torch.tensor(results[False][metric])
    assert (toward > away).all()
    if metric == "share_norm":  # above the span's fair share of the context when pulled, below when pushed
        assert (toward > 1).all() and (away < 1).all()


def test_random_model_sits_near_the_fair_share():
    tokenizer = chat_tokenizer()
    prompt = render(tokenizer, "Write a function. " + CONSTRAINT)
    model = tiny_model("qwen2", len(tokenizer), "sdpa")  # small random weights: near-uniform attention
    result = span_attention(model, tokenizer, [prompt], ["It adds each item."], [constraint_char_span(prompt, CONSTRAINT)])[0]
    assert all(0.8 < v < 1.25 for v in result["share_norm"])
