"""Paired tests between paradigms on the same items, at each paradigm's final checkpoint.

Test: exact McNemar on item-level constrained success for one k=1 condition (e.g. "hard:k1").
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

import numpy as np
from scipy.stats import binomtest, bootstrap

from sustain.eval.run_files import records
from sustain.eval.report.collect import BASE, Paradigm, base_checkpoint
from sustain.eval.scoring import BOOTSTRAP_RESAMPLES

TEST_NAME = "exact McNemar (binomial test on discordant items)"

Outcomes = dict[str, dict[tuple[str, str], bool]]  # condition -> (task, item_id) -> success


def item_outcomes(folder: Path) -> Outcomes:
    """k=1 constrained success of each item solved at baseline, per condition."""
    solved = {(r["task"], str(r["item_id"])) for r in records(folder, "baseline.jsonl") if r["success"]}
    out: Outcomes = {}
    for r in records(folder, "constrained.jsonl"):
        key = (r["task"], str(r["item_id"]))
        if r.get("k") == 1 and key in solved:
            out.setdefault(r["condition"], {})[key] = bool(r["success"])
    return out


def _diff_interval(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float | None, float | None]:
    """Paired bootstrap percentile interval of mean(a) - mean(b); None below two pairs."""
    if len(a) < 2:
        return (None, None)
    d = a - b
    if np.all(d == d[0]):  # every resample gives the same difference
        return (float(d[0]), float(d[0]))
    res = bootstrap((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis), paired=True,
                    vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar(a: dict, b: dict, seed: int = 0) -> dict:
    """Exact McNemar on the items present in both outcome maps."""
    common = sorted(a.keys() & b.keys())
    x = np.array([a[k] for k in common], dtype=float)
    y = np.array([b[k] for k in common], dtype=float)
    only_a = int(np.sum((x == 1) & (y == 0)))
    only_b = int(np.sum((x == 0) & (y == 1)))
    result = {"test": TEST_NAME, "n_pairs": len(common), "both": int(np.sum((x == 1) & (y == 1))),
              "only_a": only_a, "only_b": only_b, "neither": int(np.sum((x == 0) & (y == 0)))}
    if not common:
        return {**result, "rate_a": None, "rate_b": None, "diff": None, "diff_lo": None, "diff_hi": None,
                "p_value": None, "reason": "no item solved at baseline by both models with a run under this condition"}
    discordant = only_a + only_b
    lo, hi = _diff_interval(x, y, seed)
    return {**result, "rate_a": float(x.mean()), "rate_b": float(y.mean()), "diff": float(x.mean() - y.mean()),
            "diff_lo": lo, "diff_hi": hi,
            "p_value": float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0}


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
    """One exact McNemar per pair of final checkpoints and per k=1 condition both have."""
    cache: dict[Path, Outcomes] = {}

    def outcomes(folder: Path) -> Outcomes:
        if folder not in cache:
            cache[folder] = item_outcomes(folder)
        return cache[folder]

    tests = []
    for (na, ca), (nb, cb) in _pairs(paradigms):
        oa, ob = outcomes(ca.folder), outcomes(cb.folder)
        for condition in sorted(oa.keys() & ob.keys()):
            tests.append({"a": na, "b": nb, "step_a": ca.step, "step_b": cb.step, "condition": condition,
                          **mcnemar(oa[condition], ob[condition], seed)})
    return tests
