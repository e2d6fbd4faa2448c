"""Attention analysis of constrained generations (arXiv 2601.22047, section on attention) and a causal ablation.

- span: find the constraint's tokens in the rendered prompt.
- reduce: teacher-forced attention mass on those tokens per decoding step and layer, without T x T matrices.
- ablation: regenerate with the attention to those tokens scaled, from a chosen decoding step on.
- aggregate: failed vs solved curves, intervals, the one-sided test, plots.
"""
from sustain.eval.attention.ablation import ablate_generate, scaled_span_attention
from sustain.eval.attention.aggregate import summarise_attention
from sustain.eval.attention.reduce import span_attention, span_attention_ids
from sustain.eval.attention.span import TokenSpan, constraint_char_span, locate_constraint, token_span

__all__ = [
    "TokenSpan",
    "ablate_generate",
    "constraint_char_span",
    "locate_constraint",
    "scaled_span_attention",
    "span_attention",
    "span_attention_ids",
    "summarise_attention",
    "token_span",
]
