"""Per-paradigm, per-step series of every score in the summaries.

A series is a list of points {step, value, lo, hi, n}; an undefined score stays a point with
value None and its reason (a gap in a curve, a note in the table), never a 0. Pending checkpoints
have no points: they are listed apart. Every paradigm gets the same metric names, so a task or
family missing at one checkpoint shows as a gap with a reason rather than a silent hole.
"""
from __future__ import annotations

from sustain.eval.failures import CLASSES
from sustain.eval.report.collect import Checkpoint, Paradigm
from sustain.eval.scoring import wilson

ATTENTION_GAP = "attention_gap"
MISSING = "not in this checkpoint's summary.json (task, family or k not evaluated there)"


def _get(d: dict, path: tuple) -> dict | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def checkpoint_metrics(summary: dict) -> dict[str, dict]:
    """One summary.json as flat metric name -> score ({value, lo, hi, n}); the names every curve,
    table and W&B key uses. The SustainScore is only ever per task and family at k=1:
      accuracy, accuracy/<task>
      score/<task>/<family>      SustainScore (k=1)       control/<task>/<family>   its noise floor
      coverage/<task>/<family>   solved items with a constraint / solved items
      macro/<family>             macro average of score/<task>/<family> over tasks (labelled so)
      scale/<task>/<family>/k<k> the scale analysis (one item set, nested constraint sets)
      follow_rate/<task>/<family>, joint_rate/<task>/<family> (k=1), attention_gap
    """
    m = {"accuracy": summary.get("accuracy")}
    m.update({f"accuracy/{t}": s for t, s in (summary.get("accuracy_by_task") or {}).items()})
    s = summary.get("sustain") or {}
    for t, families in (s.get("headline") or {}).items():
        for f, c in families.items():
            m[f"score/{t}/{f}"] = c
            for part in ("control", "coverage", "follow_rate", "joint_rate"):
                m[f"{part}/{t}/{f}"] = c.get(part)
    m.update({f"macro/{f}": v for f, v in (s.get("macro") or {}).items()})
    for t, families in (s.get("scale") or {}).items():
        for f, sc in families.items():
            m.update({f"scale/{t}/{f}/{k}": v for k, v in sc["by_k"].items()})
    gap = (summary.get("attention") or {}).get("gap")
    if gap is not None:
        m[ATTENTION_GAP] = gap
    return {k: v for k, v in m.items() if v is not None}


def point(step: int, score: dict | None, missing: str) -> dict:
    if score is None:
        return {"step": step, "value": None, "lo": None, "hi": None, "n": 0, "reason": missing}
    p = {"step": step, "value": score.get("value"), "lo": score.get("lo"), "hi": score.get("hi"),
         "n": score.get("n", 0), **({"groups": score["groups"]} if "groups" in score else {})}
    if p["value"] is None:
        p["reason"] = score.get("reason", "undefined")
    return p


def metric_names(paradigms: list[Paradigm]) -> list[str]:
    """Every metric seen in any finished checkpoint (so each paradigm gets the same names)."""
    return sorted({m for p in paradigms for c in p.done for m in _metrics(c)})


def _metrics(c: Checkpoint) -> dict[str, dict]:
    summary = dict(c.summary)
    if c.attention:
        summary["attention"] = c.attention
    return checkpoint_metrics(summary)


def tasks(paradigms: list[Paradigm]) -> list[str]:
    return sorted({m.split("/")[1] for m in metric_names(paradigms) if m.startswith("accuracy/")})


def cells(paradigms: list[Paradigm]) -> list[tuple[str, str]]:
    """Every (task, family) headline cell seen in any finished checkpoint."""
    return sorted({tuple(m.split("/")[1:3]) for m in metric_names(paradigms) if m.startswith("score/")})


def failure_points(c: Checkpoint) -> dict[str, dict]:
    """Failure classes as a share of the constrained runs of items solved at baseline."""
    runs = c.summary.get("constrained_runs", 0)
    counts = dict(c.summary.get("failures") or {})
    out = {}
    meta = c.summary.get("meta_commentary")
    if isinstance(meta, dict):  # a rate among constrained failures (successes and baseline: summary.json)
        rate = meta.get("constrained_failure") or {}
        out["failures/meta_commentary"] = {"step": c.step, "value": rate.get("value"), "lo": rate.get("lo"),
                                           "hi": rate.get("hi"), "count": rate.get("successes", 0), "n": rate.get("n", 0),
                                           **({"reason": rate["reason"]} if rate.get("reason") else {})}
    for cls, count in counts.items():
        lo, hi = wilson(count, runs) if runs else (None, None)
        p = {"step": c.step, "value": count / runs if runs else None, "lo": lo, "hi": hi, "count": count, "n": runs}
        if not runs:
            p["reason"] = "no constrained runs of items solved at baseline"
        out[f"failures/{cls}"] = p
    return out


def paradigm_series(p: Paradigm, names: list[str]) -> dict[str, list[dict]]:
    series: dict[str, list[dict]] = {}
    for c in p.done:
        metrics = _metrics(c)
        for name in names:
            series.setdefault(name, []).append(point(c.step, metrics.get(name), MISSING))
        fails = failure_points(c)
        for cls in (*CLASSES, "meta_commentary"):
            series.setdefault(f"failures/{cls}", []).append(fails.get(f"failures/{cls}") or
                                                            {"step": c.step, "value": None, "count": 0, "n": 0,
                                                             "reason": f"no {cls} count in summary.json"})
    return series


def build_series(paradigms: list[Paradigm]) -> dict[str, dict[str, list[dict]]]:
    """paradigm -> metric -> points by step."""
    names = metric_names(paradigms)
    return {p.name: paradigm_series(p, names) for p in paradigms}


def final_numbers(p: Paradigm, cell_names: list[tuple[str, str]]) -> dict | None:
    """The headline numbers of a paradigm's last finished checkpoint."""
    return None if p.final is None else checkpoint_numbers(p.final, cell_names)


def checkpoint_numbers(c: Checkpoint, cell_names: list[tuple[str, str]]) -> dict:
    """The headline numbers of one finished checkpoint: per (task, family) cell, k=1."""
    m = _metrics(c)
    get = lambda name: point(c.step, m.get(name), MISSING)
    heads = (_get(c.summary, ("sustain", "headline")) or {})
    return {
        "step": c.step,
        "folder": str(c.folder),
        "accuracy": get("accuracy"),
        "cells": {f"{t}/{f}": {"task": t, "family": f, "accuracy": get(f"accuracy/{t}"), "score": get(f"score/{t}/{f}"),
                               "control": get(f"control/{t}/{f}"), "coverage": get(f"coverage/{t}/{f}"),
                               "vs_control_p": (_get(heads, (t, f, "vs_control")) or {}).get("p_value"),
                               "follow_rate": get(f"follow_rate/{t}/{f}")}
                  for t, f in cell_names},
        "macro": {name.split("/", 1)[1]: get(name) for name in sorted(m) if name.startswith("macro/")},
        "attention_gap": get(ATTENTION_GAP),
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
