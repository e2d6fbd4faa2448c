"""A short human-readable summary of one eval run."""
from __future__ import annotations

from sustain.eval.constraints.soft_summary import soft_line
from sustain.eval.scoring import fmt


def print_summary(summary: dict, out: str) -> None:
    s = summary["sustain"]
    lines = [
        f"model        {summary.get('model')}",
        f"code sandbox {summary.get('sandbox') or 'none (no code task)'}",
        f"accuracy     {fmt(summary['accuracy'])}",
        f"SustainScore {fmt(s['overall'])}",
    ]
    for group in ("by_task", "by_family", "by_category", "by_k"):
        for name, score in s[group].items():
            lines.append(f"  {group[3:]:<9}{name:<12} {fmt(score)}")
    lines += [
        f"follow rate  {fmt(summary['follow_rate'])}",
        f"joint rate   {fmt(summary['joint_rate'])}",
        "failures     " + (", ".join(f"{k}={v}" for k, v in summary["failures"].items() if v) or "none"),
        *([soft_line(summary["soft_constraints"])] if summary.get("soft_constraints") else []),
        f"run folder   {out} (summary.json)",
    ]
    print("\n".join(lines))
