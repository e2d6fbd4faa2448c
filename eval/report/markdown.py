"""report.md from report.json's content: plots by relative path, tables, notes, and findings in words."""
from __future__ import annotations

from sustain.eval.report.comparable import describe
from sustain.eval.scoring import fmt

# metrics whose gaps are listed in report.md (all gaps are in report.json)
HEADLINE_PREFIXES = ("accuracy", "score/", "control/", "macro/", "attention_gap")


def _cell(score: dict | None) -> str:
    return fmt(score or {"value": None, "reason": "no data"}).replace("|", "\\|")


def _p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def _overlap(a: dict, b: dict) -> bool:
    return a["lo"] <= b["hi"] and b["lo"] <= a["hi"]


def _ranking(report: dict, cell: str) -> str | None:
    """One sentence ranking the paradigms' final checkpoints on one (task, family) cell."""
    final = {n: f for n, f in report["final"].items() if f is not None}
    ranked = sorted(((f["cells"][cell]["score"]["value"], n) for n, f in final.items()
                     if f["cells"][cell]["score"]["value"] is not None), reverse=True)
    if not ranked:
        return None
    best = ranked[0][1]
    b = final[best]["cells"][cell]
    sentence = (f"{cell} (k=1): **{best}** keeps the most at its final checkpoint (step {final[best]['step']}): "
                f"{fmt(b['score'])}, control {fmt(b['control'])}")
    if len(ranked) > 1:
        s = final[ranked[1][1]]["cells"][cell]["score"]
        sentence += (f"; ahead of {ranked[1][1]} ({fmt(s)}); their 95% intervals "
                     + ("overlap." if _overlap(b["score"], s) else "do not overlap."))
    return sentence


def findings(report: dict) -> list[str]:
    """Plain sentences drawn from the numbers (nothing here is hand-written per run)."""
    out = [s for cell in report["cells"] if (s := _ranking(report, cell))]
    if not out:
        out.append("No paradigm has a defined SustainScore (k=1, any task and family) at its final checkpoint yet.")
    for name, metrics in report["series"].items():
        for cell in report["cells"]:
            sustain = [p for p in metrics.get(f"score/{cell}", []) if p["value"] is not None]
            acc = [p for p in metrics.get(f"accuracy/{cell.split('/')[0]}", []) if p["value"] is not None]
            if len(sustain) >= 2 and len(acc) >= 2:
                out.append(f"{name}, {cell}: SustainScore {sustain[0]['value']:.3f} at step {sustain[0]['step']} -> "
                           f"{sustain[-1]['value']:.3f} at step {sustain[-1]['step']} (change "
                           f"{sustain[-1]['value'] - sustain[0]['value']:+.3f}); baseline accuracy "
                           f"{acc[0]['value']:.3f} -> {acc[-1]['value']:.3f}.")
    significant = [t for t in report["paired_tests"] if t["p_value"] is not None and t["p_value"] < 0.05]
    for t in significant:
        out.append(f"Paired on {t['n_pairs']} items ({t['task']}, {t['condition']}), {t['a']} vs {t['b']}: "
                   f"difference {t['diff']:+.3f}, p = {_p(t['p_value'])}.")
    if report["paired_tests"] and not significant:
        out.append("No paired test between final checkpoints reaches p < 0.05.")
    if report["pending"]:
        out.append(f"{len(report['pending'])} checkpoint(s) still pending: the curves stop before them.")
    return out


def final_table(report: dict) -> list[str]:
    """One row per paradigm and (task, family) cell at its final checkpoint, the base model first."""
    rows_in = ([("base model", report["base"])] if report.get("base") else []) + list(report["final"].items())
    attention = any(f and f["attention_gap"]["value"] is not None for _, f in rows_in)
    head = ["paradigm", "final step", "task", "family", "accuracy", "SustainScore (k=1)", "control retention",
            "McNemar p (vs control)", "coverage", "follow rate", *(["attention gap"] if attention else [])]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, f in rows_in:
        if f is None:
            rows.append(f"| {name} | none finished | " + " | ".join(["-"] * (len(head) - 2)) + " |")
            continue
        for cell in report["cells"]:
            c = f["cells"][cell]
            cov = c["coverage"]
            coverage = (f"{cov['value']:.3f} ({round(cov['value'] * cov['n'])}/{cov['n']})"
                        if cov["value"] is not None else _cell(cov))
            cells = [name, str(f["step"]), c["task"], c["family"], _cell(c["accuracy"]), _cell(c["score"]),
                     _cell(c["control"]), _p(c["vs_control_p"]), coverage, _cell(c["follow_rate"]),
                     *([_cell(f["attention_gap"])] if attention else [])]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def macro_lines(report: dict) -> list[str]:
    """The macro average over tasks per family: labelled, with the tasks it averages."""
    rows_in = ([("base model", report["base"])] if report.get("base") else []) + list(report["final"].items())
    return [f"- {name}, {family}: {_cell(m)} (over {', '.join(m.get('groups') or []) or 'no task'})"
            for name, f in rows_in for family, m in (f or {}).get("macro", {}).items()]


def paired_table(report: dict) -> list[str]:
    tests = report["paired_tests"]
    if not tests:
        return ["No pair of final checkpoints to compare (one paradigm, or no k=1 runs in common)."]
    rows = [f"Test: {tests[0]['test']}, per task, on items both models solved at baseline, each item's k=1 "
            "constrained success (see eval/report/stats.py for why).", "",
            "| A | B | task | condition | pairs | both kept | only A | only B | neither | rate A - rate B [95% CI] | p |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tests:
        if t["p_value"] is None:
            diff = t["reason"]
        else:
            ci = "" if t["diff_lo"] is None else f" [{t['diff_lo']:+.3f}, {t['diff_hi']:+.3f}]"
            diff = f"{t['diff']:+.3f}{ci}"
        rows.append(f"| {t['a']} (step {t['step_a']}) | {t['b']} (step {t['step_b']}) | {t['task']} | {t['condition']} | "
                    f"{t['n_pairs']} | {t['both']} | {t['only_a']} | {t['only_b']} | {t['neither']} | {diff} | "
                    f"{_p(t['p_value'])} |")
    return rows


def render(report: dict, notes: str | None = None) -> str:
    lines = ["# SustainScore robustness report", "",
             "Built from run folders only: " + ", ".join(f"`{p}`" for p in report["inputs"]) + ".",
             f"Paradigms: {', '.join(report['final'])}. Tasks: {', '.join(report['tasks']) or 'none'}.",
             "Code sandbox: " + ("; ".join(f"{name}: {', '.join(modes)}" for name, modes in report.get("sandbox", {}).items()
                                          if modes) or "none (no code task)") + ".", ""]
    if report.get("settings_differences"):  # overlaid although their evals differ: said first, loudly
        lines += ["## WARNING: these curves were evaluated with different settings", "",
                  "Built with --allow-mixed-settings. Differences between curves below may come from these settings, "
                  "not from training:", ""]
        lines += [f"- {describe(d)}" for d in report["settings_differences"]] + [""]
    for soft in report.get("soft_llms") or []:
        lines += [f"Soft constraints extracted by {', '.join(soft['extractor'])}, judged by {', '.join(soft['judge'])}.", ""]
    lines += ["## What this shows", ""]
    lines += [f"- {s}" for s in findings(report)]
    lines += ["", "## Final numbers", "",
              "Each cell: value [95% interval] n (items). SustainScore = solved under one self-evident constraint / "
              "solved at baseline, per task and family; control retention = the same items re-run with no "
              "constraint in the same batches (the noise floor); coverage = solved items that got a constraint / "
              "solved items (the rest are counted by reason in summary.json). Undefined scores give their reason.", ""]
    lines += final_table(report)
    lines += ["", "Macro average over tasks, per family (each task weighs the same; not a pooled SustainScore):", ""]
    lines += macro_lines(report)
    lines += ["", "## Paired tests between final checkpoints", ""]
    lines += paired_table(report)
    lines += ["", "## Robustness curves", ""]
    plots = report["plots"]
    for key, name in plots.items():
        if key.startswith("cell/"):
            label = key.split("/", 1)[1]
            lines += [f"### {label}", "", f"![SustainScore (k=1), control and accuracy by step, {label}]({name})", ""]
    if "attention_gap" in plots:
        lines += ["## Attention on the constraint", "", f"![attention gap by step]({plots['attention_gap']})", ""]
    lines += ["## Failure classes", "",
              "Rules over each failed output's answer region; their agreement with hand labels on real model "
              "failures, per class, is in the suite's README (tests/fixtures/failure_labels/). A share of "
              "output_spec failures is only as good as that agreement.", "",
              f"![failure classes by step]({plots['failures']})", ""]
    lines += ["## Pending checkpoints", ""]
    lines += ([f"- {p['paradigm']} step {p['step']}: {p['reason']} (`{p['folder']}`)" for p in report["pending"]]
              or ["None: every checkpoint found has a summary."])
    lines += ["", "## Undefined scores (gaps in the curves)", ""]
    shown = [u for u in report["undefined"] if u["metric"].startswith(HEADLINE_PREFIXES)]
    lines += [f"- {u['paradigm']} step {u['step']} {u['metric']}: {u['reason']}" for u in shown] or ["None."]
    if len(report["undefined"]) > len(shown):
        lines.append(f"- and {len(report['undefined']) - len(shown)} more (coverage, scale, follow rates): see report.json")
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"
