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
from scipy.stats import binomtest, bootstrap

Z95 = 1.959963984540054
MCNEMAR = "exact McNemar (binomial test on discordant items)"
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
    result = {"test": MCNEMAR, "n_pairs": len(common), "both": int(np.sum((x == 1) & (y == 1))),
              "only_a": only_a, "only_b": only_b, "neither": int(np.sum((x == 0) & (y == 0)))}
    if not common:
        return {**result, "rate_a": None, "rate_b": None, "diff": None, "diff_lo": None, "diff_hi": None,
                "p_value": None, "reason": "no item with an outcome on both sides"}
    discordant = only_a + only_b
    lo, hi = _diff_interval(x, y, seed)
    return {**result, "rate_a": float(x.mean()), "rate_b": float(y.mean()), "diff": float(x.mean() - y.mean()),
            "diff_lo": lo, "diff_hi": hi,
            "p_value": float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0}


def macro_average(outcomes: dict[str, list[int]], seed: int = 0) -> dict:
    """Unweighted mean of the groups' rates (each group, e.g. task, weighs the same), with a
    percentile interval from a stratified bootstrap (items resampled within each group)."""
    groups = {g: np.asarray(v, dtype=float) for g, v in sorted(outcomes.items()) if len(v)}
    if not groups:
        return {"value": None, "lo": None, "hi": None, "n": 0, "groups": [], "reason": "no group has a defined rate"}
    rng = np.random.default_rng(seed)
    means = np.zeros(BOOTSTRAP_RESAMPLES)
    for v in groups.values():
        means += v[rng.integers(0, len(v), size=(BOOTSTRAP_RESAMPLES, len(v)))].mean(axis=1)
    means /= len(groups)
    lo, hi = np.quantile(means, [0.025, 0.975])
    value = float(np.mean([v.mean() for v in groups.values()]))
    return {"value": value, "lo": float(lo), "hi": float(hi), "n": int(sum(len(v) for v in groups.values())),
            "groups": list(groups), "interval": "stratified-bootstrap"}
