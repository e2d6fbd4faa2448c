"""Exports for reading by hand: an audit sample of back-translated constraints, and all failures.

The back-translation is the paper's main validity risk: a person should check that each kept
constraint really is satisfied by the original output (and each rejected one is not).
"""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from sustain.eval.errors import UserError, os_error
from sustain.eval.failures import analyse
from sustain.eval.records import RecordStore
from sustain.eval.run_files import open_records

AUDIT_FIELDS = ("task", "item_id", "family", "category", "constraint_id", "constraint_text", "self_evident",
                "verdict_detail", "original_output")


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


def export_audit(run: str | Path, n: int = 50, seed: int = 0, fmt: str = "csv") -> Path:
    run = Path(run)
    base = {(r["task"], r["item_id"]): r for r in _store(run, "baseline.jsonl")}
    rows = []
    for rec in _store(run, "constraints.jsonl"):
        if (rec["task"], rec["item_id"]) not in base:
            raise UserError(f"{run / 'constraints.jsonl'} holds {rec['task']}/{rec['item_id']}, which baseline.jsonl lacks",
                            "restore baseline.jsonl, or delete constraints.jsonl to recompute it")
        output = base[(rec["task"], rec["item_id"])]["output"]
        for cand in rec["candidates"]:
            c = cand.get("constraint") if isinstance(cand, dict) else None
            if not isinstance(c, dict) or not all(isinstance(c.get(k), str) for k in ("family", "category", "id", "text")):
                continue  # a candidate that failed extraction has no constraint to audit
            rows.append({"task": rec["task"], "item_id": rec["item_id"], "family": c["family"],
                         "category": c["category"], "constraint_id": c["id"], "constraint_text": c["text"],
                         "self_evident": cand.get("self_evident"),
                         "verdict_detail": json.dumps(cand.get("verdict", {}), sort_keys=True),
                         "original_output": output})
    rows.sort(key=lambda r: (r["task"], r["item_id"], r["constraint_id"]))
    sample = random.Random(seed).sample(rows, min(n, len(rows)))
    path = run / f"audit_n{n}_seed{seed}.{fmt}"

    def write(fh) -> None:
        if fmt == "csv":
            w = csv.DictWriter(fh, fieldnames=AUDIT_FIELDS)
            w.writeheader()
            w.writerows(sample)
        else:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in sample)
    return _write_lines(path, write)


def export_failures(run: str | Path) -> Path:
    run = Path(run)
    solved = {(r["task"], r["item_id"]) for r in _store(run, "baseline.jsonl") if r["success"]}
    result = analyse(list(_store(run, "constrained.jsonl")), solved, max_examples=10**9)
    return _write_lines(run / "failures.jsonl",
                        lambda fh: fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in result["examples"]))
