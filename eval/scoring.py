"""Scores derived from records: every number carries its n and a 95% interval.

SustainScore over items solved at baseline = constrained successes / constrained runs (each run
of such an item would have succeeded without the constraint). When an item contributes several
constrained runs (k = 1..K, hard and soft), runs of one item are not independent, so the interval
is a cluster bootstrap over items; with one run per item it is the Wilson interval.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterable

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000


def wilson(successes: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def cluster_bootstrap(values_by_cluster: dict, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the pooled mean, resampling whole clusters (items)."""
    sums = np.array([sum(v) for v in values_by_cluster.values()], dtype=float)
    sizes = np.array([len(v) for v in values_by_cluster.values()], dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(sums), size=(BOOTSTRAP_RESAMPLES, len(sums)))
    means = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return (float(lo), float(hi))


def proportion(
    records: Iterable[dict],
    outcome: Callable[[dict], bool | None],
    undefined_reason: str,
    seed: int = 0,
) -> dict:
    """{value, lo, hi, n, successes} of a 0/1 outcome; outcomes of None are left out.

    n counts records; the interval accounts for several records of one item.
    """
    by_item: dict[tuple, list[int]] = defaultdict(list)
    for r in records:
        o = outcome(r)
        if o is not None:
            by_item[(r["task"], r["item_id"])].append(int(bool(o)))
    n = sum(len(v) for v in by_item.values())
    if n == 0:
        return {"value": None, "lo": None, "hi": None, "n": 0, "successes": 0, "reason": undefined_reason}
    s = sum(sum(v) for v in by_item.values())
    if all(len(v) == 1 for v in by_item.values()):
        lo, hi = wilson(s, n)
        method = "wilson"
    else:
        lo, hi = cluster_bootstrap(by_item, seed)
        method = "cluster-bootstrap"
    return {"value": s / n, "lo": lo, "hi": hi, "n": n, "successes": s, "items": len(by_item), "interval": method}


def grouped(records: list[dict], key: Callable[[dict], Iterable[str]], score: Callable[[list[dict]], dict]) -> dict:
    """Score each group; a record may belong to several groups (e.g. its constraints' categories)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        for g in key(r):
            groups[g].append(r)
    return {g: score(rs) for g, rs in sorted(groups.items())}


def fmt(score: dict) -> str:
    """'0.85 [0.78, 0.90] n=120', or 'undefined (reason)'."""
    if score.get("value") is None:
        return f"undefined ({score.get('reason', 'no data')})"
    return f"{score['value']:.3f} [{score['lo']:.3f}, {score['hi']:.3f}] n={score['n']}"
