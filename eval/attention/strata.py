"""Failed-minus-solved attention gaps that composition alone cannot produce.

Raw attention mass grows with the constraint span's length (k = 3 blocks and soft sentences are
longer, and fail more) and shrinks with the visible context (HotpotQA prompts are ~10x GSM8K's),
so a gap pooled over tasks, families and k can appear with no difference inside any of them.
Here the gap is computed on length-normalised mass only, inside strata of equal task, family and
k, and combined with stated weights; a second, paired view compares failed and solved generations
of the same item.

Metrics (per generation: the mean over its decoding steps):
  per_token_norm  mass / span tokens
  share_norm      mass / (span tokens / visible tokens): 1.0 = the span's fair share of attention
Weights: a stratum s with f failed and g solved generations weighs f*g/(f+g) (the Cochran-Mantel-
Haenszel weight for a difference of means: balanced strata count most, a stratum with only one
outcome cannot be compared and is left out, and is counted under "excluded").
Intervals: 95% percentile bootstrap, resampling generations within each stratum and outcome
(stratified view) or items (paired view); seeded, reproducible.
"""
from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np

METRICS = ("share_norm", "per_token_norm")
HEADLINE_METRIC = "share_norm"
RESAMPLES = 2000
WEIGHTS = "f*g/(f+g) per stratum (task x family x k), f failed and g solved generations; single-outcome strata left out"


def _rng(seed: int, *salt: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(salt).encode())])


def _mean(series) -> float | None:
    values = [v for v in series or [] if v is not None]
    return float(np.mean(values)) if values else None


def _interval(draws: np.ndarray) -> tuple[float | None, float | None]:
    if draws.size == 0:
        return None, None
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def stratum_key(r: dict) -> tuple[str, str, str]:
    return (str(r["task"]), str(r.get("family")), str(r.get("k")))


def stratified_gap(records: list[dict], metric: str, seed: int = 0) -> dict:
    """Weighted mean over strata of (mean failed - mean solved) of `metric`, with a bootstrap interval."""
    strata: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: {"failed": [], "solved": []})
    for r in records:
        value = _mean(r.get(metric))
        if value is not None:
            strata[stratum_key(r)]["solved" if r["success"] else "failed"].append(value)
    rows, excluded = [], {"strata": 0, "generations": 0}
    for key in sorted(strata):
        f, g = (np.asarray(strata[key][o], float) for o in ("failed", "solved"))
        if f.size == 0 or g.size == 0:
            excluded["strata"] += 1
            excluded["generations"] += int(f.size + g.size)
            continue
        rows.append({"task": key[0], "family": key[1], "k": key[2], "n_failed": int(f.size), "n_solved": int(g.size),
                     "gap": float(f.mean() - g.mean()), "weight": float(f.size * g.size / (f.size + g.size)),
                     "_f": f, "_g": g})
    # n counts every generation with a value; "excluded" says how many sat in single-outcome strata
    n_failed = sum(len(v["failed"]) for v in strata.values())
    n_solved = sum(len(v["solved"]) for v in strata.values())
    out = {"metric": metric, "weights": WEIGHTS, "n": n_failed + n_solved, "n_failed": n_failed,
           "n_solved": n_solved, "n_strata": len(rows), "excluded": excluded}
    if not rows:
        reason = "no stratum (task x family x k) holds both failed and solved generations"
        return {**out, "value": None, "lo": None, "hi": None, "reason": reason, "strata": []}
    weights = np.array([r["weight"] for r in rows])
    weights = weights / weights.sum()
    value = float(sum(w * r["gap"] for w, r in zip(weights, rows)))
    rng = _rng(seed, "stratified", metric)
    draws = np.zeros(RESAMPLES)
    for w, r in zip(weights, rows):  # resample each stratum's two groups independently
        f, g = r["_f"], r["_g"]
        fm = f[rng.integers(0, f.size, (RESAMPLES, f.size))].mean(axis=1)
        gm = g[rng.integers(0, g.size, (RESAMPLES, g.size))].mean(axis=1)
        draws += w * (fm - gm)
    lo, hi = _interval(draws)
    strata_rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return {**out, "value": value, "lo": lo, "hi": hi, "strata": strata_rows}


def paired_gap(records: list[dict], metric: str, seed: int = 0) -> dict:
    """Within-item view: for each item with both a failed and a solved generation (several constraints or
    k), mean failed minus mean solved `metric`; the mean over such items, bootstrap over items."""
    by_item: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: {"failed": [], "solved": []})
    for r in records:
        value = _mean(r.get(metric))
        if value is not None:
            by_item[(str(r["task"]), str(r["item_id"]))]["solved" if r["success"] else "failed"].append(value)
    diffs = np.array([np.mean(v["failed"]) - np.mean(v["solved"]) for v in by_item.values() if v["failed"] and v["solved"]])
    out = {"metric": metric, "n_items": int(diffs.size), "n_items_one_outcome": len(by_item) - int(diffs.size)}
    if diffs.size == 0:
        return {**out, "value": None, "lo": None, "hi": None, "reason": "no item has both a failed and a solved generation"}
    draws = diffs[_rng(seed, "paired", metric).integers(0, diffs.size, (RESAMPLES, diffs.size))].mean(axis=1)
    lo, hi = _interval(draws) if diffs.size >= 2 else (None, None)
    result = {**out, "value": float(diffs.mean()), "lo": lo, "hi": hi}
    if diffs.size < 2:
        result["reason"] = "interval needs at least 2 items with both outcomes"
    return result


def composition_safe_gaps(records: list[dict], seed: int = 0) -> dict:
    """Both views for both normalised metrics: {"stratified": {metric: ...}, "paired": {metric: ...}}."""
    return {
        "stratified": {m: stratified_gap(records, m, seed) for m in METRICS},
        "paired": {m: paired_gap(records, m, seed) for m in METRICS},
    }
