"""Scaling the number of constraints: pick k compatible ones with a seeded RNG, render them as text."""
from __future__ import annotations

import random

from sustain.eval.constraints import ifeval_layer
from sustain.eval.constraints.base import Constraint


def compatible(a: Constraint, b: Constraint) -> bool:
    """Two hard constraints must not share an IFEval id or be an IFEval-listed conflict; soft ones must differ."""
    if a.id == b.id:
        return False
    if a.family == b.family == "hard":
        return not ifeval_layer.conflicting(a.instruction_id, b.instruction_id)
    return True


def choose_constraints(kept: list[Constraint], k: int, seed: int) -> list[Constraint] | None:
    """k pairwise-compatible constraints in a seeded random order, or None when no such set exists."""
    if k < 1:
        return None
    order = sorted(kept, key=lambda c: c.id)  # independent of the caller's order
    random.Random(seed).shuffle(order)

    def extend(chosen: list[Constraint], start: int) -> list[Constraint] | None:
        if len(chosen) == k:
            return chosen
        for i in range(start, len(order) - (k - len(chosen)) + 1):  # leave room for the rest
            if all(compatible(order[i], c) for c in chosen):
                found = extend(chosen + [order[i]], i + 1)
                if found:
                    return found
        return None

    return extend([], 0)


def render(constraints: list[Constraint]) -> str:
    """The constraint texts, one per line, in the chosen order."""
    return "\n".join(c.text for c in constraints)
