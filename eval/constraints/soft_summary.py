"""What happened to every LLM-written (soft) constraint, counted from the records: nothing vanishes.

Each soft candidate record ends in exactly one state: kept (judged self-evident), not_self_evident,
rejected by the leak check (per reason), or an error (per kind: empty reply, unparseable reply,
timeout, generator error; at extraction or at the self-evidence judge). Constrained runs add the
follow judge's missing verdicts. The models that extracted and judged are named.
"""
from __future__ import annotations

from collections import Counter


def soft_state(cand: dict) -> str:
    """One candidate's state: kept | not_self_evident | rejected:<reason> | extraction_error:<e> | judge_error:<e>."""
    if cand.get("rejected"):
        reasons = cand.get("leak") or [cand["rejected"]]
        return f"rejected:{reasons[0]}"
    if cand.get("error"):
        return f"{'judge' if cand.get('constraint') else 'extraction'}_error:{cand['error']}"
    return "kept" if cand.get("self_evident") is True else "not_self_evident"


def soft_summary(extracted: list[dict], constrained: list[dict]) -> dict | None:
    """Counts over constraints.jsonl's soft candidates and constrained.jsonl's soft follow verdicts;
    None when the run had no soft family."""
    cands = [c for rec in extracted for c in rec.get("candidates", []) if c.get("checked_by") == "llm"]
    if not cands:
        return None
    states = Counter(soft_state(c) for c in cands)
    group = lambda prefix: {k.split(":", 1)[1]: v for k, v in sorted(states.items()) if k.startswith(prefix + ":")}
    leaks = Counter(reason for c in cands for reason in c.get("leak") or [])
    verdicts = [v for r in constrained for v in r.get("follow_judge") or []]
    return {
        "extractor": sorted({c["extractor"] for c in cands if c.get("extractor")}),
        "judge": sorted({c["judge"] for c in cands if c.get("judge")}),
        "records": len(cands),
        "proposed": sum(c.get("constraint") is not None for c in cands),
        "kept": states["kept"],
        "not_self_evident": states["not_self_evident"],
        "rejected": group("rejected"),
        "leak_reasons": dict(sorted(leaks.items())),  # a constraint may leak for several reasons
        "extraction_errors": group("extraction_error"),
        "judge_errors": group("judge_error"),
        "follow_judged": len(verdicts),
        "follow_no_verdict": dict(sorted(Counter(v["error"] for v in verdicts if v.get("error")).items())),
    }


def soft_line(soft: dict) -> str:
    """One console line: where every soft constraint went, and who extracted and judged."""
    def counts(d: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in d.items()) or "none"
    return (f"soft         kept {soft['kept']}/{soft['proposed']} proposed; not self-evident {soft['not_self_evident']}; "
            f"rejected {counts(soft['rejected'])}; extraction errors {counts(soft['extraction_errors'])}; "
            f"judge errors {counts(soft['judge_errors'])}; follow verdicts missing {counts(soft['follow_no_verdict'])}"
            f" (extractor {', '.join(soft['extractor'])}; judge {', '.join(soft['judge'])})")
