"""A short human-readable summary of one eval run: the headline cells first, then the rest."""
from __future__ import annotations

from sustain.eval.constraints.soft_summary import soft_line
from sustain.eval.grading_figures import truncation_line
from sustain.eval.scoring import fmt


def _p(test: dict) -> str:
    p = test.get("p_value")
    return "p n/a" if p is None else f"p={p:.3g}"


def _coverage(c: dict) -> str:
    excluded = ", ".join(f"{reason} {n}" for reason, n in c["excluded"].items())
    return f"{c['with_constraint']}/{c['solved']}" + (f" (left out: {excluded})" if excluded else "")


def headline_lines(summary: dict) -> list[str]:
    s = summary["sustain"]
    lines = ["SustainScore, k=1, per task and family (control = the same items re-run with no constraint; "
             "McNemar constrained vs control)"]
    for task, families in s["headline"].items():
        for family, c in families.items():
            lines += [f"  {task:<10}{family:<5} {fmt(c)}",
                      f"  {'':<15} control {fmt(c['control'])}  {_p(c['vs_control'])}",
                      f"  {'':<15} coverage {_coverage(c['coverage'])}"]
    for family, m in s["macro"].items():
        lines.append(f"  {m['label'].split(' (')[0]}, {family}: {fmt(m)}")
    return lines


def scale_lines(summary: dict) -> list[str]:
    lines = []
    for task, families in summary["sustain"]["scale"].items():
        for family, sc in families.items():
            if sc["k_max"] < 2:
                continue
            ks = "  ".join(f"{k} {fmt(v)}" for k, v in sc["by_k"].items())
            lines.append(f"  {task:<10}{family:<5} items {_coverage(sc['coverage'])}: {ks}")
    return ["scale (nested constraint sets, one item set per task and family)", *lines] if lines else []


def print_summary(summary: dict, out: str) -> None:
    lines = [f"model        {summary.get('model')}",
             f"code sandbox {summary.get('sandbox') or 'none (no code task)'}",
             f"accuracy     {fmt(summary['accuracy'])}"]
    lines += [f"  {task:<10} {fmt(score)}" for task, score in summary["accuracy_by_task"].items()]
    lines += [truncation_line(summary["truncation"])] if summary.get("truncation") else []
    lines += headline_lines(summary) + scale_lines(summary)
    follow = [f"{t}/{f} {fmt(c['follow_rate'])}" for t, fs in summary["sustain"]["headline"].items()
              for f, c in fs.items()]
    failures = ", ".join(f"{k}={v}" for k, v in summary["failures"].items() if v) or "none"
    lines += [f"follow rate (k=1)  {'; '.join(follow)}",
              f"failures     {failures} (of {summary['constrained_runs']} constrained runs, all k and families)",
              *([soft_line(summary["soft_constraints"])] if summary.get("soft_constraints") else []),
              f"run folder   {out} (summary.json; docs/REPRODUCE.md recomputes every number from the records)"]
    print("\n".join(lines))
