"""Self-evident constraints back-translated from a model's own solved outputs.

    hard (rules + IFEval verifier): extract_hard(question, output) -> candidate records; check_hard(c, output)
    soft (an LLM):                  SoftExtractor(generator, cache_dir).extract(question, output); .judge_follow(c, output)
    scaling:                        choose_constraints(kept, k, seed); render(constraints)

A candidate record is {"constraint": Constraint.to_dict() | None, "self_evident": bool | None,
"checked_by": "ifeval" | "llm", and "reason" or "error"}; kept_constraints(records) keeps the
self-evident ones. A new category is one line in base.CATEGORIES.
"""
from sustain.eval.constraints.base import CATEGORIES, FAMILIES, Constraint, candidate, check_category, kept_constraints
from sustain.eval.constraints.hard import check_hard, extract_hard, make_hard
from sustain.eval.constraints.select import choose_constraints, compatible, render
from sustain.eval.constraints.soft import SoftExtractor

__all__ = [
    "CATEGORIES", "FAMILIES", "Constraint", "SoftExtractor", "candidate", "check_category", "check_hard",
    "choose_constraints", "compatible", "extract_hard", "kept_constraints", "make_hard", "render",
]
