"""Find which prompt tokens carry the constraint: the tokens whose characters overlap the constraint's."""
from __future__ import annotations

from dataclasses import dataclass

from sustain.eval.errors import UserError


@dataclass(frozen=True)
class TokenSpan:
    """The prompt's token ids (no special tokens added: the chat template already rendered them) and the
    constraint's tokens as the half-open range [start, end)."""

    input_ids: list[int]
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def constraint_char_span(prompt: str, constraint: str) -> tuple[int, int]:
    """Character range of the LAST occurrence of `constraint` in `prompt` (the constraint is appended to the
    instruction, so an earlier copy would be part of the task text)."""
    if not constraint:
        raise UserError("the constraint text is empty", "pass the constraint exactly as it appears in the prompt")
    start = prompt.rfind(constraint)
    if start < 0:
        raise UserError(
            f"constraint text {constraint[:60]!r} does not occur in the rendered prompt",
            "pass the constraint exactly as the chat template rendered it (same whitespace and case)",
        )
    return start, start + len(constraint)


def token_span(tokenizer, prompt: str, char_span: tuple[int, int]) -> TokenSpan:
    """Tokenise `prompt` and return the tokens whose character range overlaps `char_span`."""
    char_start, char_end = char_span
    if not 0 <= char_start < char_end <= len(prompt):
        raise UserError(
            f"character span {char_span} is not a non-empty range inside the prompt of {len(prompt)} characters",
            "pass (start, end) with 0 <= start < end <= len(prompt)",
        )
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            f"{type(tokenizer).__name__} is a slow tokenizer without offset mapping",
            "load the tokenizer with AutoTokenizer.from_pretrained(..., use_fast=True)",
        )
    encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    overlapping = [
        i
        for i, (start, end) in enumerate(encoded["offset_mapping"])
        if end > start and start < char_end and end > char_start
    ]
    if not overlapping:
        raise UserError(
            f"no token of the prompt covers characters {char_span}",
            "check that the span points at visible constraint text, not at whitespace the tokenizer drops",
        )
    return TokenSpan(list(encoded["input_ids"]), overlapping[0], overlapping[-1] + 1)


def locate_constraint(tokenizer, prompt: str, constraint: str) -> TokenSpan:
    """The constraint's tokens in the rendered prompt (its last occurrence)."""
    return token_span(tokenizer, prompt, constraint_char_span(prompt, constraint))
