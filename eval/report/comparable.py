"""Curves are overlaid only when their evals were run alike: a refusal otherwise, or the differences in print.

A paradigm comparison is only as fair as its evals. The model-independent eval settings of every
finished checkpoint (read from its run.json) must agree across everything a report overlays: the
base model's step-0 eval included. A difference is an error unless the user allows mixed settings,
and then it is listed in report.json and at the top of report.md.
"""
from __future__ import annotations

import json
from pathlib import Path

from sustain.eval.errors import UserError

# Settings that change what a score means whatever the model: the items, the constraints, the budget.
COMPARED = ("tasks", "split", "limit", "data", "families", "categories", "k_max", "max_new_tokens", "temperature",
            "position", "sandbox")
FINGERPRINT = "data_fingerprint"  # when every run records one, it replaces the data paths


def eval_settings(folder: Path) -> dict | None:
    """The compared settings of one eval run folder (None without a readable run.json)."""
    try:
        meta = json.loads((Path(folder) / "run.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    parts = [meta.get("config"), meta.get("identity")]  # a damaged run.json may hold anything
    values = {k: v for part in parts if isinstance(part, dict) for k, v in part.items()}
    return {k: values.get(k) for k in (*COMPARED, FINGERPRINT)}


def differences(paradigms) -> list[dict]:
    """[{"setting", "values": {value: ["paradigm@step", ...]}}] for each compared setting that differs."""
    runs = {}
    for p in paradigms:
        for c in p.done:
            settings = eval_settings(c.folder)
            if settings is not None:
                runs[f"{p.name}@{c.step}"] = settings
    if not runs:
        return []
    keys = list(COMPARED)
    if all(s.get(FINGERPRINT) for s in runs.values()):  # same content under other paths is the same data
        keys = [FINGERPRINT if k == "data" else k for k in keys]
    found = []
    for key in keys:
        by_value: dict[str, list[str]] = {}
        for run, settings in runs.items():
            by_value.setdefault(json.dumps(settings.get(key), sort_keys=True), []).append(run)
        if len(by_value) > 1:
            found.append({"setting": key, "values": by_value})
    return found


def describe(diff: dict) -> str:
    return f"{diff['setting']}: " + "; ".join(f"{value} ({', '.join(runs)})" for value, runs in diff["values"].items())


def check_comparable(paradigms, allow_mixed: bool) -> list[dict]:
    """The differences; a UserError naming the first ones when there are any and they are not allowed."""
    diffs = differences(paradigms)
    if diffs and not allow_mixed:
        shown = " | ".join(describe(d) for d in diffs[:2]) + (f" | and {len(diffs) - 2} more" if len(diffs) > 2 else "")
        raise UserError(f"the report's evals were run with different settings, so their curves are not comparable: {shown}",
                        "evaluate every checkpoint with the same eval settings, or pass --allow-mixed-settings "
                        "to overlay them anyway (the report then lists the differences)")
    return diffs
