"""The headline: SustainScore at k = 1, for each task and each constraint family separately.

    SustainScore(task, family) = (items solved at baseline that are solved again under one
                                  self-evident constraint of that family)
                                 / (items solved at baseline that got such a constraint)

Beside it, per cell: n and the Wilson 95% interval; the coverage (solved items that got a
constraint / solved items, the others counted by reason); the control retention (the same items
re-run with no constraint in the same batches: the noise floor) and an exact McNemar test of
constrained vs control on those items. Nothing here pools families or k. The macro average over
tasks is a separate, labelled number. The scale analysis (k = 1..K) uses one item set per task and
family: the solved items that got nested constraint sets at every k.
"""
from __future__ import annotations

from collections import Counter

from sustain.eval.constraints import kept_constraints
from sustain.eval.constraints.soft_summary import soft_state
from sustain.eval.scoring import macro_average, mcnemar, proportion, wilson

DEFINITION = ("SustainScore = solved under one self-evident constraint (k=1) / solved at baseline, over the "
              "items solved at baseline that got such a constraint; per task and per family")
MACRO = "macro average over tasks (each task weighs the same); not pooled over items"

Key = tuple[str, str]  # (task, item_id)


def _key(r: dict) -> Key:
    return (r["task"], str(r["item_id"]))


def exclusion_reason(extract: dict | None, family: str, categories: list[str] | None) -> str:
    """Why a solved item has no k=1 run in a family (read from its extraction record)."""
    if extract is None:
        return "not extracted yet"
    candidates = extract.get("candidates") or []
    if not candidates:
        return "no candidate constraint"
    kept = [c for c in kept_constraints(candidates) if c.family == family]
    if not kept:
        states = Counter(soft_state(c).split(":")[0] for c in candidates)
        errors = Counter(str(c["error"]).split(":")[0] for c in candidates if c.get("error"))
        if states["extraction_error"] == len(candidates):
            return f"extraction failed ({errors.most_common(1)[0][0]})"
        if states["rejected"] == len(candidates):
            return "every candidate rejected (leak check)"
        if states["judge_error"] + states["extraction_error"] == len(candidates):
            return f"no self-evidence verdict ({errors.most_common(1)[0][0]})"
        return "no self-evident candidate"
    if categories and not any(c.category in categories for c in kept):
        return "no self-evident candidate in the chosen categories"
    return "constrained run missing"


def coverage(solved: int, covered: int, excluded: Counter) -> dict:
    lo, hi = wilson(covered, solved) if solved else (None, None)
    return {"value": covered / solved if solved else None, "lo": lo, "hi": hi, "n": solved,
            "with_constraint": covered, "solved": solved, "excluded": dict(sorted(excluded.items())),
            **({} if solved else {"reason": "no items solved at baseline"})}


def cell(task: str, family: str, solved: set[Key], extracted: dict, k1: dict[Key, dict], control: dict[Key, dict],
         categories: list[str] | None, seed: int) -> dict:
    """One (task, family) headline cell over this task's solved items."""
    runs = [k1[i] for i in sorted(solved) if i in k1]
    excluded = Counter(exclusion_reason(extracted.get((*i, f"extract:{family}")), family, categories)
                       for i in sorted(solved) if i not in k1)
    reason = "no items solved at baseline" if not solved else f"no solved item got a self-evident {family} constraint"
    score = proportion(runs, lambda r: r["success"], reason, seed)
    paired_control = [control[_key(r)] for r in runs if _key(r) in control]
    checked = "no constrained outputs checked"
    return {
        **score,
        "coverage": coverage(len(solved), len(runs), excluded),
        "control": proportion(paired_control, lambda r: r["success"],
                              "no control re-run of these items" if runs else reason, seed),
        "vs_control": mcnemar({_key(r): bool(r["success"]) for r in runs},
                              {i: bool(r["success"]) for i, r in control.items()}, seed),
        "follow_rate": proportion(runs, lambda r: r.get("followed_all"), checked, seed),
        "joint_rate": proportion(runs, lambda r: None if r.get("followed_all") is None
                                 else r["success"] and r["followed_all"], checked, seed),
    }


def scale(solved: set[Key], by_k: dict[int, dict[Key, dict]], k_max: int, seed: int) -> dict:
    """SustainScore by k on ONE item set: the solved items with a run at every k = 1..k_max."""
    have_k1 = set(by_k.get(1, {})) & solved
    common = set(have_k1)
    for k in range(2, k_max + 1):
        common &= set(by_k.get(k, {}))
    excluded = Counter()
    if len(have_k1) > len(common):
        excluded[f"fewer than {k_max} compatible self-evident constraints"] = len(have_k1) - len(common)
    if len(solved) > len(have_k1):
        excluded["no k=1 constraint"] = len(solved) - len(have_k1)
    reason = f"no solved item got {k_max} nested compatible constraints"
    return {"k_max": k_max, "coverage": coverage(len(solved), len(common), excluded),
            "by_k": {f"k{k}": proportion([by_k[k][i] for i in sorted(common)], lambda r: r["success"], reason, seed)
                     for k in range(1, k_max + 1)}}


def headline(base: list[dict], extracted: list[dict], runs: list[dict], control: list[dict], families: list[str],
             categories: list[str] | None = None, k_max: int | None = None, seed: int = 0) -> dict:
    """summary.json's "sustain" block: headline cells, macro averages, scale analysis, categories."""
    tasks = sorted({r["task"] for r in base})
    solved = {t: {_key(r) for r in base if r["task"] == t and r["success"]} for t in tasks}
    all_solved = set().union(*solved.values()) if solved else set()
    ext = {(r["task"], str(r["item_id"]), r["condition"]): r for r in extracted}
    ctrl = {_key(r): r for r in control if _key(r) in all_solved}
    runs_at: dict[tuple[str, int], dict[Key, dict]] = {}
    for r in runs:
        if _key(r) in all_solved:
            runs_at.setdefault((r["family"], r["k"]), {})[_key(r)] = r
    k_top = k_max or max((k for _, k in runs_at), default=1)
    out = {"definition": DEFINITION, "headline": {}, "macro": {}, "scale": {}, "by_category": {}}
    for t in tasks:
        out["headline"][t] = {f: cell(t, f, solved[t], ext, runs_at.get((f, 1), {}), ctrl, categories, seed)
                              for f in families}
        out["scale"][t] = {f: scale(solved[t], {k: runs_at.get((f, k), {}) for k in range(1, k_top + 1)}, k_top, seed)
                           for f in families}
        k1 = [r for f in families for i, r in runs_at.get((f, 1), {}).items() if i[0] == t]
        cats = sorted({r["constraints"][0]["category"] for r in k1})
        out["by_category"][t] = {c: proportion([r for r in k1 if r["constraints"][0]["category"] == c],
                                               lambda r: r["success"], "no runs", seed) for c in cats}
    for f in families:
        per_task = {t: [int(bool(runs_at[(f, 1)][i]["success"])) for i in sorted(solved[t]) if i in runs_at.get((f, 1), {})]
                    for t in tasks}
        left_out = {t: out["headline"][t][f]["reason"] for t in tasks if not per_task[t]}
        out["macro"][f] = {**macro_average(per_task, seed), "label": MACRO, "left_out": left_out}
    return out
