"""Figures about the grading itself, for summary.json: how often generations hit the token budget
(at baseline and under constraints), and accuracy under each answer filter a task records
(GSM8K: lm-evaluation-harness's "strict-match" and "flexible-extract")."""
from __future__ import annotations

from sustain.eval.scoring import fmt, grouped, proportion

# A baseline truncation rate above this biases the solved set toward short outputs: say so.
TRUNCATION_WARNING = 0.05


def _cut(record: dict) -> bool:
    return record.get("finish_reason") == "length"


def truncation(base: list[dict], constrained: list[dict], seed: int = 0) -> dict:
    """Share of generations cut at max_new_tokens, overall and per task, with n and 95% intervals."""
    def rate(records: list[dict], what: str) -> dict:
        return proportion(records, _cut, f"no {what} generations", seed)

    def by_task(records: list[dict], what: str) -> dict:
        return grouped(records, lambda r: [r["task"]], lambda rs: rate(rs, what))

    out = {
        "baseline": rate(base, "baseline"),
        "constrained": rate(constrained, "constrained"),
        "baseline_by_task": by_task(base, "baseline"),
        "constrained_by_task": by_task(constrained, "constrained"),
    }
    value = out["baseline"]["value"]
    if value is not None and value > TRUNCATION_WARNING:
        out["warning"] = (f"{value:.1%} of baseline generations hit max_new_tokens: the solved set leans toward "
                          "short outputs; raise max_new_tokens")
    return out


def truncation_line(figures: dict) -> str:
    """One console line: the truncation rates at baseline and under constraints (and the warning)."""
    line = f"truncated    baseline {fmt(figures['baseline'])}; constrained {fmt(figures['constrained'])}"
    return line + (f"\n  warning: {figures['warning']}" if figures.get("warning") else "")


def accuracy_by_filter(base: list[dict], seed: int = 0) -> dict:
    """Baseline accuracy per task under each filter its records carry in detail["filters"], judged as
    lm-evaluation-harness does (no rule for outputs cut at the limit); tasks without filters are left out."""
    out = {}
    for task in sorted({r["task"] for r in base}):
        records = [r for r in base if r["task"] == task and (r.get("detail") or {}).get("filters")]
        names = sorted({name for r in records for name in r["detail"]["filters"]})
        if names:
            out[task] = {name: proportion(records, lambda r, name=name: r["detail"]["filters"].get(name),
                                          "no graded outputs", seed) for name in names}
    return out
