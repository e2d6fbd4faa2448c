"""Per-paradigm, per-step series of every score in the summaries.

A series is a list of points {step, value, lo, hi, n}; an undefined score stays a point with
value None and its reason (a gap in a curve, a note in the table), never a 0. Pending checkpoints
have no points: they are listed apart. Every paradigm gets the same metric names, so a task or
family missing at one checkpoint shows as a gap with a reason rather than a silent hole.
"""
from __future__ import annotations

from sustain.eval.failures import CLASSES
from sustain.eval.report.collect import Checkpoint, Paradigm

# metric name -> path of a single score in summary.json
SCORES = {
    "accuracy": ("accuracy",),
    "sustain": ("sustain", "overall"),
    "follow_rate": ("follow_rate",),
    "joint_rate": ("joint_rate",),
}
# metric prefix -> path of a {group: score} mapping in summary.json
GROUPS = {
    "accuracy/task": ("accuracy_by_task",),
    "sustain/task": ("sustain", "by_task"),
    "sustain/family": ("sustain", "by_family"),
    "sustain/k": ("sustain", "by_k"),
}
MISSING = {
    "accuracy/task": "no baseline items of {g} at this checkpoint",
    "sustain/task": "no constrained runs for {g} (nothing solved at baseline, or no self-evident constraint)",
    "sustain/family": "no constrained runs of the {g} family at this checkpoint",
    "sustain/k": "no constrained runs with {g} at this checkpoint",
}
ATTENTION_GAP = "attention_gap"


def _get(d: dict, path: tuple) -> dict | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def point(step: int, score: dict | None, missing: str) -> dict:
    if score is None:
        return {"step": step, "value": None, "lo": None, "hi": None, "n": 0, "reason": missing}
    p = {"step": step, "value": score.get("value"), "lo": score.get("lo"), "hi": score.get("hi"),
         "n": score.get("n", 0)}
    if p["value"] is None:
        p["reason"] = score.get("reason", "undefined")
    return p


def group_names(paradigms: list[Paradigm]) -> dict[str, list[str]]:
    """metric prefix -> every group (task, family, k) seen in any finished checkpoint."""
    names: dict[str, set] = {prefix: set() for prefix in GROUPS}
    for p in paradigms:
        for c in p.done:
            for prefix, path in GROUPS.items():
                names[prefix].update(_get(c.summary, path) or {})
    return {prefix: sorted(v) for prefix, v in names.items()}


def tasks(paradigms: list[Paradigm]) -> list[str]:
    groups = group_names(paradigms)
    return sorted(set(groups["accuracy/task"]) | set(groups["sustain/task"]))


def failure_points(c: Checkpoint) -> dict[str, dict]:
    """Failure classes as a share of the constrained runs of items solved at baseline."""
    runs = (_get(c.summary, ("sustain", "overall")) or {}).get("n", 0)
    counts = dict(c.summary.get("failures") or {})
    out = {}
    meta = c.summary.get("meta_commentary")
    if isinstance(meta, dict):  # a rate among constrained failures (successes and baseline: summary.json)
        rate = meta.get("constrained_failure") or {}
        out["failures/meta_commentary"] = {"step": c.step, "value": rate.get("value"), "lo": rate.get("lo"),
                                           "hi": rate.get("hi"), "count": rate.get("successes", 0), "n": rate.get("n", 0),
                                           **({"reason": rate["reason"]} if rate.get("reason") else {})}
    for cls, count in counts.items():
        p = {"step": c.step, "value": count / runs if runs else None, "count": count, "n": runs}
        if not runs:
            p["reason"] = "no constrained runs of items solved at baseline"
        out[f"failures/{cls}"] = p
    return out


def paradigm_series(p: Paradigm, groups: dict[str, list[str]], with_attention: bool) -> dict[str, list[dict]]:
    series: dict[str, list[dict]] = {}
    for c in p.done:
        s = c.summary
        for metric, path in SCORES.items():
            series.setdefault(metric, []).append(point(c.step, _get(s, path), f"no {metric} in summary.json"))
        for prefix, path in GROUPS.items():
            scores = _get(s, path) or {}
            for g in groups[prefix]:
                series.setdefault(f"{prefix}/{g}", []).append(point(c.step, scores.get(g), MISSING[prefix].format(g=g)))
        if with_attention:
            gap = (c.attention or {}).get("gap")
            series.setdefault(ATTENTION_GAP, []).append(point(c.step, gap, "no attention summary at this checkpoint"))
        fails = failure_points(c)
        for cls in (*CLASSES, "meta_commentary"):
            series.setdefault(f"failures/{cls}", []).append(fails.get(f"failures/{cls}") or
                                                            {"step": c.step, "value": None, "count": 0, "n": 0,
                                                             "reason": f"no {cls} count in summary.json"})
    return series


def build_series(paradigms: list[Paradigm]) -> dict[str, dict[str, list[dict]]]:
    """paradigm -> metric -> points by step."""
    groups = group_names(paradigms)
    with_attention = any(c.attention for p in paradigms for c in p.done)
    return {p.name: paradigm_series(p, groups, with_attention) for p in paradigms}


def final_numbers(p: Paradigm, task_names: list[str]) -> dict | None:
    """The headline numbers of a paradigm's last finished checkpoint."""
    return None if p.final is None else checkpoint_numbers(p.final, task_names)


def checkpoint_numbers(c: Checkpoint, task_names: list[str]) -> dict:
    """The headline numbers of one finished checkpoint."""
    s = c.summary
    by_task = _get(s, ("sustain", "by_task")) or {}
    return {
        "step": c.step,
        "folder": str(c.folder),
        "accuracy": point(c.step, s.get("accuracy"), "no accuracy in summary.json"),
        "sustain": point(c.step, _get(s, ("sustain", "overall")), "no SustainScore in summary.json"),
        "sustain_by_task": {t: point(c.step, by_task.get(t), MISSING["sustain/task"].format(g=t)) for t in task_names},
        "follow_rate": point(c.step, s.get("follow_rate"), "no follow rate in summary.json"),
        "attention_gap": point(c.step, (c.attention or {}).get("gap"), "no attention summary"),
    }


def undefined_points(series: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """Every undefined point with its reason (failure shares excluded: they follow the SustainScore's n)."""
    out = []
    for name, metrics in series.items():
        for metric, points in metrics.items():
            if metric.startswith("failures/"):
                continue
            for pt in points:
                if pt["value"] is None:
                    out.append({"paradigm": name, "metric": metric, "step": pt["step"], "reason": pt["reason"]})
    return out
