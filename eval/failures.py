"""Failure analysis by rules over records: why an item solved at baseline failed under a constraint.

Classes (the first that applies wins; meta-commentary is also counted as a flag on its own):
  truncated      the output hit the token limit
  code_syntax    the program does not parse
  code_runtime   the program runs but a test fails, raises or times out
  output_spec    the work reaches the right answer but the extracted answer is missing or wrong
                 (the constraint broke the answer format, not the reasoning)
  reasoning      an answer is extractable and it is wrong
  no_answer      nothing extractable and the gold answer is nowhere in the output
"""
from __future__ import annotations

import re

from sustain.eval.tasks import answer_kind_of

META_PATTERNS = re.compile(
    r"\b(as (you )?(requested|instructed|asked)|the (constraint|instruction|requirement)s?\b|"
    r"word (limit|count)|in (all )?lowercase|without (using )?(any )?commas?|"
    r"i (will|must|need to|have to) (keep|use|include|follow|avoid|write|answer|respond)|"
    r"(following|to follow|adhere to|comply with) (the|your) (instruction|constraint|request|format))",
    re.IGNORECASE,
)
NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
CLASSES = ("truncated", "code_syntax", "code_runtime", "output_spec", "reasoning", "no_answer")
CODE_CLASSES = ("code_syntax", "code_runtime")  # for tasks whose answers are programs (Task.answer_kind "code")


def has_meta_commentary(output: str) -> bool:
    return bool(META_PATTERNS.search(output or ""))


def _numbers(text: str) -> set[str]:
    out = set()
    for m in NUMBER_RE.findall(text or ""):
        s = m.replace(",", "")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        out.add(s)
    return out


def gold_in_output(gold: str | None, output: str) -> bool:
    """Whether the work shows the gold answer somewhere (a number, or the normalised answer text)."""
    if gold is None or gold == "":
        return False
    gold_numbers = _numbers(str(gold))
    if gold_numbers and re.fullmatch(r"\s*-?[\d,]+(\.\d+)?\s*", str(gold)):
        return bool(gold_numbers & _numbers(output))
    norm = lambda s: " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())
    return f" {norm(str(gold))} " in f" {norm(output or '')} "


def classify(record: dict) -> str:
    """The failure class of a constrained record that did not succeed."""
    detail = record.get("detail") or {}
    if record.get("finish_reason") == "length":
        return "truncated"
    reason = str(detail.get("reason", ""))
    if answer_kind_of(record) == "code" or "tests" in detail:
        return "code_syntax" if "syntax" in reason.lower() else "code_runtime"
    answer = record.get("answer")
    if gold_in_output(record.get("gold"), record.get("output", "")) and (
        answer is None or not gold_in_output(record.get("gold"), str(answer))
    ):
        return "output_spec"
    if answer is not None and str(answer).strip():
        return "reasoning"
    return "no_answer"


def analyse(constrained: list[dict], solved_at_base: set[tuple[str, str]], max_examples: int = 20) -> dict:
    """Counts per class (and meta-commentary) over items solved at baseline that failed constrained."""
    counts = {c: 0 for c in CLASSES}
    meta = 0
    examples = []
    for r in constrained:
        if r["success"] or (r["task"], r["item_id"]) not in solved_at_base:
            continue
        cls = classify(r)
        counts[cls] += 1
        is_meta = has_meta_commentary(r.get("output", ""))
        meta += is_meta
        if len(examples) < max_examples:
            examples.append(failure_row(r, cls, is_meta))
    return {"counts": counts, "meta_commentary": meta, "total": sum(counts.values()), "examples": examples}


def failure_row(r: dict, cls: str, is_meta: bool) -> dict:
    return {
        "task": r["task"],
        "item_id": r["item_id"],
        "condition": r["condition"],
        "class": cls,
        "meta_commentary": is_meta,
        "constraint": r.get("constraint_text", ""),
        "gold": r.get("gold"),
        "answer": r.get("answer"),
        "output": r.get("output", ""),
    }
