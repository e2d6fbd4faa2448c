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
    """The first k of one seeded chain of pairwise-compatible constraints, or None when the chain is shorter.

    The chain does not depend on k, so the sets are nested: with one seed, the k=2 set holds the k=1
    constraint, the k=3 set the k=2 ones, and so on (the scale analysis compares k on one item set,
    and raising k_max later leaves the smaller sets as they were). The chain walks a seeded order and
    takes each constraint compatible with those already taken.
    """
    if k < 1:
        return None
    order = sorted(kept, key=lambda c: c.id)  # independent of the caller's order
    random.Random(seed).shuffle(order)
    chain: list[Constraint] = []
    for c in order:
        if all(compatible(c, other) for other in chain):
            chain.append(c)
            if len(chain) == k:
                return chain
    return None


def render(constraints: list[Constraint]) -> str:
    """The constraint texts, one per line, in the chosen order."""
    return "\n".join(c.text for c in constraints)
