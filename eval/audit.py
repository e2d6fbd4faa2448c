"""Exports for reading by hand: an audit sample of back-translated constraints, and all failures.

The back-translation is the paper's main validity risk: a person should check that each kept
constraint really is satisfied by the original output (and each rejected one is not), and see what
the constrained run then did. Every candidate record is a row, whatever became of it (kept, not
self-evident, rejected by the leak check, an empty or unparseable reply, a timeout), so the sample
shows the failures of the extraction too. Written as CSV or JSONL plus a small HTML page.
"""
from __future__ import annotations

import csv
import html
import json
import random
from pathlib import Path

from sustain.eval.constraints.soft_summary import soft_state
from sustain.eval.errors import UserError, os_error
from sustain.eval.failures import analyse
from sustain.eval.records import RecordStore
from sustain.eval.run_files import open_records, records

AUDIT_FIELDS = ("task", "item_id", "family", "category", "constraint_id", "constraint_text", "state",
                "self_evident", "judge_reason", "error", "leak", "raw_reply", "extractor", "judge",
                "original_output", "constrained_condition", "constrained_success", "constrained_followed",
                "follow_reason", "constrained_output")
LONG_FIELDS = ("original_output", "constrained_output", "raw_reply")


def _store(run: Path, name: str) -> RecordStore:
    return open_records(run, name, must_exist=True)


def _write_lines(path: Path, write) -> Path:
    """Write an export beside the records; a read-only folder or a full disk is one line naming it."""
    try:
        with path.open("w", newline="", encoding="utf-8") as fh:
            write(fh)
    except OSError as exc:
        raise os_error("write", path, exc) from None
    return path


def _state(cand: dict) -> str:
    if cand.get("checked_by") == "llm":
        return soft_state(cand)
    return "kept" if cand.get("self_evident") is True else "not_self_evident"


def _runs_by_constraint(run: Path) -> dict[tuple, list[dict]]:
    """Constrained records by (task, item, constraint id); the k=1 run first (its outcome is this constraint's alone)."""
    found: dict[tuple, list[dict]] = {}
    for rec in records(run, "constrained.jsonl"):
        for c in rec.get("constraints") or []:
            if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                continue
            found.setdefault((rec["task"], rec["item_id"], c["id"]), []).append(rec)
    for runs in found.values():
        runs.sort(key=lambda r: r.get("k", 0))
    return found


def _constrained_columns(runs: list[dict], constraint_id: str) -> dict:
    if not runs:
        return {"constrained_condition": None, "constrained_success": None, "constrained_followed": None,
                "follow_reason": None, "constrained_output": None}
    rec = runs[0]
    ids = [c["id"] for c in rec.get("constraints") or []]
    follow = rec.get("follow") or []
    followed = follow[ids.index(constraint_id)] if constraint_id in ids and ids.index(constraint_id) < len(follow) else None
    verdict = next((v for v in rec.get("follow_judge") or [] if v.get("id") == constraint_id), {})
    return {"constrained_condition": rec["condition"], "constrained_success": rec.get("success"),
            "constrained_followed": followed, "follow_reason": verdict.get("reason") or verdict.get("error"),
            "constrained_output": rec.get("output")}


def audit_rows(run: str | Path) -> list[dict]:
    """One row per candidate constraint of the run folder, in a fixed order."""
    run = Path(run)
    base = {(r["task"], r["item_id"]): r for r in _store(run, "baseline.jsonl")}
    used = _runs_by_constraint(run)
    rows = []
    # constraints.jsonl is absent when no item was solved: no constraints, no rows
    for rec in records(run, "constraints.jsonl"):
        output = (base.get((rec["task"], rec["item_id"])) or {}).get("output")
        for cand in rec.get("candidates") or []:
            if not isinstance(cand, dict):
                continue
            c = cand.get("constraint") or {}  # None when the extraction reply itself failed
            c = c if isinstance(c, dict) else {}
            row = {"task": rec["task"], "item_id": rec["item_id"], "family": c.get("family", "soft"),
                   "category": c.get("category"), "constraint_id": c.get("id"), "constraint_text": c.get("text"),
                   "state": _state(cand), "self_evident": cand.get("self_evident"), "judge_reason": cand.get("reason"),
                   "error": cand.get("error"), "leak": ",".join(cand.get("leak") or []) or None,
                   "raw_reply": cand.get("raw") or cand.get("detail"), "extractor": cand.get("extractor"),
                   "judge": cand.get("judge") or cand.get("checked_by"), "original_output": output}
            row.update(_constrained_columns(used.get((rec["task"], rec["item_id"], c.get("id")), []), c.get("id")))
            rows.append(row)
    rows.sort(key=lambda r: (r["task"], str(r["item_id"]), r["constraint_id"] or "", r["state"]))
    return rows


def export_audit(run: str | Path, n: int = 50, seed: int = 0, fmt: str = "csv") -> Path:
    """A seeded sample of n audit rows as CSV or JSONL, plus the same rows as an HTML page beside it."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}", "pass the number of rows to sample, e.g. --n 50")
    run = Path(run)
    rows = audit_rows(run)
    sample = random.Random(seed).sample(rows, min(n, len(rows)))
    sample.sort(key=lambda r: (r["task"], str(r["item_id"]), r["constraint_id"] or ""))
    path = run / f"audit_n{n}_seed{seed}.{fmt}"

    def write(fh) -> None:
        if fmt == "csv":
            w = csv.DictWriter(fh, fieldnames=AUDIT_FIELDS)
            w.writeheader()
            w.writerows(sample)
        else:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in sample)
    _write_lines(path, write)
    _write_lines(path.with_suffix(".html"), lambda fh: fh.write(audit_html(sample, run, len(rows))))
    return path


def _cell(field: str, value) -> str:
    text = "" if value is None else str(value)
    if field in LONG_FIELDS and len(text) > 160:
        return f"<details><summary>{html.escape(text[:160])}…</summary><pre>{html.escape(text)}</pre></details>"
    return f"<pre>{html.escape(text)}</pre>" if field in LONG_FIELDS else html.escape(text)


def audit_html(rows: list[dict], run: Path, total: int) -> str:
    """One card per sampled pair: the constraint and its verdict above, the two outputs side by side."""
    head = ("<!doctype html><meta charset='utf-8'><title>constraint audit</title><style>"
            "body{font-family:sans-serif;max-width:80em;margin:auto}section{border:1px solid #ccc;margin:1em 0;padding:.5em}"
            "pre{white-space:pre-wrap;margin:0}td{vertical-align:top;padding:.2em .5em}.kept{color:#060}"
            ".cols{display:grid;grid-template-columns:1fr 1fr;gap:1em}</style>")
    parts = [head, f"<h1>Constraint audit: {html.escape(str(run))}</h1>",
             f"<p>{len(rows)} of {total} candidate constraints, sampled. For each: is the constraint true of the "
             "original output (the self-evidence verdict), and what did the constrained run do?</p>"]
    for r in rows:
        meta = ["task", "item_id", "family", "category", "state", "self_evident", "judge_reason", "error", "leak",
                "extractor", "judge", "constrained_condition", "constrained_success", "constrained_followed", "follow_reason"]
        table = "".join(f"<tr><td>{f}</td><td>{_cell(f, r[f])}</td></tr>" for f in meta if r.get(f) is not None)
        parts.append(
            f"<section><h3 class='{html.escape(r['state'])}'>{html.escape(r['constraint_text'] or '(no constraint: ' + str(r['error']) + ')')}</h3>"
            f"<table>{table}</table><div class='cols'><div><b>original output</b>{_cell('original_output', r['original_output'])}</div>"
            f"<div><b>constrained output</b>{_cell('constrained_output', r['constrained_output'])}</div></div>"
            + (f"<p><b>raw reply</b>{_cell('raw_reply', r['raw_reply'])}</p>" if r.get("raw_reply") else "")
            + "</section>")
    return "\n".join(parts)


def export_failures(run: str | Path) -> Path:
    run = Path(run)
    solved = {(r["task"], r["item_id"]) for r in _store(run, "baseline.jsonl") if r["success"]}
    result = analyse(list(_store(run, "constrained.jsonl")), solved, max_examples=10**9)
    return _write_lines(run / "failures.jsonl",
                        lambda fh: fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in result["examples"]))
