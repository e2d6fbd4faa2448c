"""Attention mass that each generated token puts on the constraint's tokens, from one teacher-forced pass.

Decoding step s is the forward step that produced generated token s: its query is the token before it
(the last prompt token for s = 0), as `generate(output_attentions=True)` would report it.

Nothing T x T is kept: each layer's own attention call (sdpa or eager, with its mask and scaling) also
computes the span mass, through an extra value channel (see SpanMassRecorder), and we keep one number
per (sequence, decoding step), averaged over heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sustain.eval.attention.interface import attention_wrapped
from sustain.eval.attention.span import TokenSpan, token_span
from sustain.eval.errors import UserError


@dataclass
class Batch:
    """Left-padded prompt + output sequences and where the span and the decoding-step queries sit."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T), counted from each sequence's first real token, as generate does
    span_columns: torch.Tensor  # (B, T) bool
    prompt_lengths: list[int]
    output_lengths: list[int]

    @property
    def first_row(self) -> int:
        """First query row any sequence needs: the rows are the last max(output_lengths) + 1 minus the final one."""
        return self.input_ids.shape[1] - 1 - max(self.output_lengths)


def build_batch(spans: list[TokenSpan], output_ids: list[list[int]], pad_id: int) -> Batch:
    """Prompt ids + output ids per sequence, left-padded to one length (the layout generate() uses)."""
    lengths = [len(s.input_ids) + len(o) for s, o in zip(spans, output_ids)]
    total = max(lengths)
    ids = torch.full((len(spans), total), pad_id, dtype=torch.long)
    mask = torch.zeros((len(spans), total), dtype=torch.long)
    span_columns = torch.zeros((len(spans), total), dtype=torch.bool)
    for b, (span, out, length) in enumerate(zip(spans, output_ids, lengths)):
        pad = total - length
        ids[b, pad:] = torch.tensor(span.input_ids + out, dtype=torch.long)
        mask[b, pad:] = 1
        span_columns[b, pad + span.start : pad + span.end] = True
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(
        ids, mask, position_ids, span_columns, [len(s.input_ids) for s in spans], [len(o) for o in output_ids]
    )


class SpanMassRecorder:
    """Attention wrapper: the model's own attention, with one extra value channel that is 1 on span keys.

    Attention output channel d is sum_j p_j * v_j[d]; with v_j = 1 on span columns and 0 elsewhere it is
    exactly the softmax mass on the span, normalised over every visible key by the same kernel, mask and
    scaling that produce the real output. q and k get zero channels to match (q.k is unchanged), so
    fused kernels that need equal head dims still run.
    """

    def __init__(self, span_columns: torch.Tensor, first_row: int):
        self.span_columns = span_columns
        self.first_row = first_row
        self.per_layer: dict[int, torch.Tensor] = {}  # layer -> (B, rows) mean over heads

    def __call__(self, inner, module, query, key, value, attention_mask, **kwargs):
        dim = query.shape[-1]
        if value.shape[-1] != dim or key.shape[2] != query.shape[2]:
            raise RuntimeError("span mass expects equal q/k/v head dims and one forward pass without a cache")
        kwargs["scaling"] = kwargs.get("scaling") or dim**-0.5  # the padded width must not change the scale
        pad = 8 - dim % 8  # keep the width a multiple of 8, as fused kernels prefer
        span = self.span_columns.to(device=value.device, dtype=value.dtype)
        span = span[:, None, :, None].expand(-1, value.shape[1], -1, 1)
        value = torch.cat([value, span, value.new_zeros(*value.shape[:-1], pad - 1)], dim=-1)
        query, key = F.pad(query, (0, pad)), F.pad(key, (0, pad))
        output, weights = inner(module, query, key, value, attention_mask, **kwargs)  # output: (B, T, H, width)
        self.per_layer[module.layer_idx] = output[:, self.first_row : -1, :, dim].float().mean(-1)
        return output[..., :dim], weights


def _forward_batch(model, batch: Batch) -> torch.Tensor:
    """(layers, B, rows) span mass for rows first_row .. T-2."""
    recorder = SpanMassRecorder(batch.span_columns, batch.first_row)
    device = model.device
    with torch.no_grad(), attention_wrapped(model, recorder):
        model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            position_ids=batch.position_ids.to(device),
            use_cache=False,
            logits_to_keep=1,  # the logits are not needed; skip the (T x vocab) head
        )
    return torch.stack([recorder.per_layer[i] for i in sorted(recorder.per_layer)]).cpu()


def _record(per_layer: torch.Tensor, span: TokenSpan) -> dict:
    """per_layer: (layers, steps) for one generation."""
    per_step = per_layer.mean(0)
    steps = per_step.shape[0]
    context = torch.arange(len(span.input_ids), len(span.input_ids) + steps, dtype=per_step.dtype)
    return {
        "per_step": per_step.tolist(),
        "per_layer": per_layer.tolist(),
        "per_token_norm": (per_step / len(span)).tolist(),
        "share_norm": (per_step * context / len(span)).tolist(),
        "span_tokens": len(span),
        "prompt_tokens": len(span.input_ids),
        "context_tokens": context.long().tolist(),  # keys each step's query saw (prompt + earlier output)
    }


def span_attention(
    model,
    tokenizer,
    prompts: list[str],
    outputs: list[str],
    spans: list[tuple[int, int]],
    batch_size: int = 8,
) -> list[dict]:
    """For each (rendered prompt, generated output, constraint character span in the prompt), the attention
    mass on the span by decoding step, mean over heads, per layer and averaged over layers.

    Each dict: per_step (steps), per_layer (layers x steps), per_token_norm (mass / span tokens),
    share_norm (mass / (span tokens / visible tokens); 1.0 = the span's fair share), span_tokens,
    prompt_tokens, context_tokens (per step). The model must use sdpa or eager attention.
    """
    if not len(prompts) == len(outputs) == len(spans):
        raise UserError(
            f"got {len(prompts)} prompts, {len(outputs)} outputs and {len(spans)} spans",
            "pass one output and one span per prompt",
        )
    token_spans = [token_span(tokenizer, p, s) for p, s in zip(prompts, spans)]
    output_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] for o in outputs]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return span_attention_ids(model, token_spans, output_ids, batch_size, pad_id)


def span_attention_ids(
    model, token_spans: list[TokenSpan], output_ids: list[list[int]], batch_size: int = 8, pad_id: int = 0
) -> list[dict]:
    """span_attention on token ids: the prompt ids and span from `token_span`, the output's ids as generated."""
    if len(token_spans) != len(output_ids):
        raise UserError(f"got {len(token_spans)} spans and {len(output_ids)} outputs", "pass one output per span")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}", "pass batch_size >= 1")
    # Similar lengths share a batch, so little compute goes to padding.
    order = sorted(range(len(token_spans)), key=lambda i: len(token_spans[i].input_ids) + len(output_ids[i]))
    results: list[dict | None] = [None] * len(token_spans)
    layers = model.config.num_hidden_layers
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            members = order[start : start + batch_size]
            batch = build_batch([token_spans[i] for i in members], [output_ids[i] for i in members], pad_id)
            mass = _forward_batch(model, batch) if max(batch.output_lengths) else torch.zeros(layers, len(members), 0)
            rows = mass.shape[-1]
            for b, i in enumerate(members):
                steps = batch.output_lengths[b]
                results[i] = _record(mass[:, b, rows - steps :], token_spans[i])
    finally:
        model.train(was_training)
    return results
