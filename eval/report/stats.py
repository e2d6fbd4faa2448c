"""Paired tests between paradigms on the same items, at each paradigm's final checkpoint.

Test: exact McNemar on item-level constrained success for one task and k=1 condition (e.g. gsm8k,
"hard:k1"), the cells of the headline.
The pairs are the items that BOTH models solved at their own baseline and that both re-ran under a
single constraint; each pair is (A kept its answer under its constraint, B kept its answer).

Why this test:
- SustainScore is defined over items solved at baseline, and k=1 gives exactly one constrained
  record per item and family (records are keyed by (task, item, condition)), so every item gives
  one 0/1 outcome per model: the paired binary design McNemar's test is made for.
- Pairing on items removes item difficulty, the largest source of variance between two models'
  scores; the unpaired intervals of the two SustainScores overlap far more than the paired test.
- Exact (binomial on the discordant pairs) rather than chi-square: per-checkpoint evals are small
  and discordant counts often below 10, where the chi-square approximation is poor.
Caveat: each model's constraints are back-translated from its own output, so a pair compares the
two models under constraints of the same kind on the same item, not under identical text.
The difference of the two rates on the paired items carries a paired bootstrap 95% interval
(items resampled together). p-values are not adjusted for the number of comparisons.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

from sustain.eval.run_files import records
from sustain.eval.report.collect import BASE, Paradigm, base_checkpoint
from sustain.eval.scoring import mcnemar

Outcomes = dict[tuple[str, str], dict[tuple[str, str], bool]]  # (task, condition) -> (task, item_id) -> success


def item_outcomes(folder: Path) -> Outcomes:
    """k=1 constrained success of each item solved at baseline, per task and condition."""
    solved = {(r["task"], str(r["item_id"])) for r in records(folder, "baseline.jsonl") if r["success"]}
    out: Outcomes = {}
    for r in records(folder, "constrained.jsonl"):
        key = (r["task"], str(r["item_id"]))
        if r.get("k") == 1 and key in solved:
            out.setdefault((r["task"], r["condition"]), {})[key] = bool(r["success"])
    return out


def _pairs(paradigms: list[Paradigm]):
    """(label, checkpoint) pairs to compare: every paradigm with every other, and each with the base model."""
    finals = {p.name: p.final for p in paradigms if p.final is not None}
    base = base_checkpoint(paradigms)
    entries = list(finals.items())
    if base is not None and all(c.folder != base.folder for _, c in entries):
        entries.insert(0, (BASE, base))
    for (na, ca), (nb, cb) in combinations(entries, 2):
        if ca.folder != cb.folder:
            yield (nb, cb), (na, ca)  # the later entry first: trained paradigm vs base reads "sft - base"


def paired_tests(paradigms: list[Paradigm], seed: int = 0) -> list[dict]:
    """One exact McNemar per pair of final checkpoints, per task and k=1 condition both have."""
    cache: dict[Path, Outcomes] = {}

    def outcomes(folder: Path) -> Outcomes:
        if folder not in cache:
            cache[folder] = item_outcomes(folder)
        return cache[folder]

    tests = []
    for (na, ca), (nb, cb) in _pairs(paradigms):
        oa, ob = outcomes(ca.folder), outcomes(cb.folder)
        for task, condition in sorted(oa.keys() & ob.keys()):
            tests.append({"a": na, "b": nb, "step_a": ca.step, "step_b": cb.step, "task": task,
                          "condition": condition, **mcnemar(oa[task, condition], ob[task, condition], seed)})
    return tests
