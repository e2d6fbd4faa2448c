"""summary.json, derived from a run folder's records alone (never edited by hand)."""
from __future__ import annotations

import json
from pathlib import Path

from sustain.eval.constraints.soft_summary import soft_summary
from sustain.eval.errors import UserError
from sustain.eval.failures import analyse
from sustain.eval.grading_figures import accuracy_by_filter, truncation
from sustain.eval.headline import headline
from sustain.eval.records import RecordStore, write_json_atomic
from sustain.eval.scoring import grouped, proportion


def _read(path: Path) -> list[dict]:
    return list(RecordStore(path)) if path.exists() else []


def write_summary(out: str | Path) -> dict:
    out = Path(out)
    if not (out / "run.json").is_file():
        raise UserError(f"{out} is not an eval run folder: no run.json", "pass the --out folder of a `sustain eval` run")
    meta = json.loads((out / "run.json").read_text())
    config = meta.get("config") or {}
    constrained, extracted = _read(out / "constrained.jsonl"), _read(out / "constraints.jsonl")
    summary = summarise(_read(out / "baseline.jsonl"), constrained, meta["identity"]["seed"],
                        extracted=extracted, control=_read(out / "control.jsonl"),
                        families=config.get("families"), categories=config.get("categories"),
                        k_max=config.get("k_max"))
    summary["model"] = meta["identity"]["model"]
    summary["sandbox"] = meta.get("sandbox")  # the isolation model-written code ran under (None: no code task)
    if meta["identity"].get("data_fingerprint"):
        summary["data_fingerprint"] = meta["identity"]["data_fingerprint"]
    soft = soft_summary(extracted, constrained)
    if soft is not None:  # where every LLM-written constraint went; empty and unparseable replies included
        summary["soft_constraints"] = soft
    attention = out / "attention_summary.json"
    if attention.exists():
        summary["attention"] = json.loads(attention.read_text())
    if (out / "ablation_summary.json").exists():  # the causal ablation (sustain.eval.attention.ablation_stage)
        summary["ablation"] = json.loads((out / "ablation_summary.json").read_text())
    write_json_atomic(out / "summary.json", summary)
    return summary


def summarise(base: list[dict], constrained: list[dict], seed: int = 0, extracted: list[dict] = (),
              control: list[dict] = (), families: list[str] | None = None, categories: list[str] | None = None,
              k_max: int | None = None) -> dict:
    """Every number of summary.json from the records (families: those asked for, plus any with records)."""
    solved = {(r["task"], r["item_id"]) for r in base if r["success"]}
    runs = [r for r in constrained if (r["task"], r["item_id"]) in solved]
    families = sorted(set(families or []) | {r["family"] for r in runs}
                      | {r["condition"].split(":", 1)[1] for r in extracted if ":" in r["condition"]}) or ["hard"]
    failures = analyse(runs, solved, baseline=base, seed=seed)
    return {
        "n_items": len(base),
        "accuracy": proportion(base, lambda r: r["success"], "no baseline records", seed),
        "accuracy_by_task": grouped(base, lambda r: [r["task"]],
                                    lambda rs: proportion(rs, lambda r: r["success"], "no items", seed)),
        "sustain": headline(base, list(extracted), runs, list(control), families, categories, k_max, seed),
        "truncation": truncation(base, constrained, seed),
        "accuracy_by_filter": accuracy_by_filter(base, seed),
        # failure classes count every constrained run (all families and k) of a solved item that failed
        "constrained_runs": len(runs),
        "failures": failures["counts"],
        "meta_commentary": failures["meta_commentary"],
        "failure_examples": failures["examples"],
    }
