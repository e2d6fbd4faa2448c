"""Causal test of the attention claim: regenerate with the attention to the constraint scaled by a factor.

Scaling the softmax probabilities of the span columns by `factor` and renormalising is the same as adding
log(factor) to those columns' logits, so we pass the model's own attention function an additive mask with
that bias on the span columns, for the chosen layers and for decoding steps >= after_step only
(decoding step s is the forward step that produces generated token s; its query sits at prompt_len - 1 + s).
factor < 1 moves attention away from the constraint, factor > 1 toward it, 0 removes it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

from sustain.eval.attention.interface import attention_wrapped, visible_keys
from sustain.eval.attention.span import token_span
from sustain.eval.errors import UserError


class SpanScaler:
    """Attention wrapper that biases the span columns for queries at absolute position >= first_query."""

    def __init__(self, span_tokens: tuple[int, int], factor: float, layers: set[int] | None, first_query: int):
        self.start, self.end = span_tokens
        self.factor = factor
        self.layers = layers
        self.first_query = first_query

    def __call__(self, inner, module, query, key, value, attention_mask, **kwargs):
        query_len, key_len = query.shape[2], key.shape[2]
        first_row = max(0, self.first_query - (key_len - query_len))  # rows of this call at or after the step
        if (self.layers is not None and module.layer_idx not in self.layers) or first_row >= query_len:
            return inner(module, query, key, value, attention_mask, **kwargs)
        allowed = visible_keys(attention_mask, slice(0, query_len), query_len, key_len, query.device)
        blocked = torch.finfo(query.dtype).min
        bias = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device).masked_fill(~allowed, blocked)
        span = bias[:, :, first_row:, self.start : self.end]
        if self.factor == 0:
            span.fill_(blocked)
        else:
            span.add_(math.log(self.factor))
        bias = bias.masked_fill(~allowed, blocked)  # a blocked column stays blocked whatever the bias
        return inner(module, query, key, value, bias, **kwargs)


@contextmanager
def scaled_span_attention(
    model,
    span_tokens: tuple[int, int],
    prompt_tokens: int,
    factor: float,
    layers: Iterable[int] | None = None,
    after_step: int = 0,
) -> Iterator[None]:
    """While open, `model` (one unpadded sequence) attends to prompt tokens [start, end) with probability scaled
    by `factor` (renormalised), in `layers` (all when None), from decoding step `after_step` on."""
    if factor < 0 or not math.isfinite(factor):
        raise UserError(f"attention scaling factor must be finite and >= 0, got {factor}", "pass e.g. 0.5 or 2.0")
    if after_step < 0:
        raise UserError(f"after_step must be >= 0, got {after_step}", "pass the number of steps to leave untouched")
    start, end = span_tokens
    if not 0 <= start < end <= prompt_tokens:
        raise UserError(
            f"span tokens {span_tokens} are not inside the prompt of {prompt_tokens} tokens",
            "pass the constraint's token range within the prompt",
        )
    n_layers = model.config.num_hidden_layers
    chosen = None if layers is None else set(layers)
    if chosen is not None and not chosen <= set(range(n_layers)):
        raise UserError(
            f"layers {sorted(chosen - set(range(n_layers)))} do not exist in a model of {n_layers} layers",
            f"pick layers from 0 to {n_layers - 1}",
        )
    scaler = SpanScaler(span_tokens, factor, chosen, first_query=prompt_tokens - 1 + after_step)
    with attention_wrapped(model, scaler):
        yield


def ablate_generate(
    model,
    tokenizer,
    prompt: str,
    span: tuple[int, int],
    factor: float,
    layers: Iterable[int] | None = None,
    after_step: int = 0,
    max_new_tokens: int = 512,
) -> str:
    """Greedy generation for the rendered `prompt` with attention to the characters `span` of it scaled by
    `factor` from decoding step `after_step` on. factor=1 gives plain greedy generation."""
    encoded = token_span(tokenizer, prompt, span)
    input_ids = torch.tensor([encoded.input_ids], device=model.device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad(), scaled_span_attention(
        model, (encoded.start, encoded.end), len(encoded.input_ids), factor, layers, after_step
    ):
        generated = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
        )
    return tokenizer.decode(generated[0, input_ids.shape[1] :], skip_special_tokens=True)
