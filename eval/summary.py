"""summary.json, derived from a run folder's records alone (never edited by hand)."""
from __future__ import annotations

import json
from pathlib import Path

from sustain.eval.constraints.soft_summary import soft_summary
from sustain.eval.errors import UserError
from sustain.eval.failures import analyse
from sustain.eval.grading_figures import accuracy_by_filter, truncation
from sustain.eval.records import RecordStore, write_json_atomic
from sustain.eval.scoring import grouped, proportion


def _read(path: Path) -> list[dict]:
    return list(RecordStore(path)) if path.exists() else []


def write_summary(out: str | Path) -> dict:
    out = Path(out)
    if not (out / "run.json").is_file():
        raise UserError(f"{out} is not an eval run folder: no run.json", "pass the --out folder of a `sustain eval` run")
    meta = json.loads((out / "run.json").read_text())
    constrained = _read(out / "constrained.jsonl")
    summary = summarise(_read(out / "baseline.jsonl"), constrained, meta["identity"]["seed"])
    summary["model"] = meta["identity"]["model"]
    summary["sandbox"] = meta.get("sandbox")  # the isolation model-written code ran under (None: no code task)
    soft = soft_summary(_read(out / "constraints.jsonl"), constrained)
    if soft is not None:  # where every LLM-written constraint went; empty and unparseable replies included
        summary["soft_constraints"] = soft
    attention = out / "attention_summary.json"
    if attention.exists():
        summary["attention"] = json.loads(attention.read_text())
    if (out / "ablation_summary.json").exists():  # the causal ablation (sustain.eval.attention.ablation_stage)
        summary["ablation"] = json.loads((out / "ablation_summary.json").read_text())
    write_json_atomic(out / "summary.json", summary)
    return summary


def summarise(base: list[dict], constrained: list[dict], seed: int = 0) -> dict:
    solved = {(r["task"], r["item_id"]) for r in base if r["success"]}
    runs = [r for r in constrained if (r["task"], r["item_id"]) in solved]
    no_solved = "no items solved at baseline" if not solved else "no self-evident constraint for any solved item"

    def sustain(rs: list[dict]) -> dict:
        return proportion(rs, lambda r: r["success"], no_solved, seed)

    def follow(rs: list[dict]) -> dict:
        return proportion(rs, lambda r: r.get("followed_all"), "no constrained outputs checked", seed)

    def joint(rs: list[dict]) -> dict:
        return proportion(rs, lambda r: None if r.get("followed_all") is None else r["success"] and r["followed_all"],
                          "no constrained outputs checked", seed)

    # by category counts a k=1 run under its constraint's category (k>1 runs mix categories)
    category = lambda r: [r["constraints"][0]["category"]] if r["k"] == 1 else []
    failures = analyse(runs, solved, baseline=base, seed=seed)
    return {
        "n_items": len(base),
        "accuracy": proportion(base, lambda r: r["success"], "no baseline records", seed),
        "accuracy_by_task": grouped(base, lambda r: [r["task"]],
                                    lambda rs: proportion(rs, lambda r: r["success"], "no items", seed)),
        "sustain": {
            "overall": sustain(runs),
            "by_task": grouped(runs, lambda r: [r["task"]], sustain),
            "by_family": grouped(runs, lambda r: [r["family"]], sustain),
            "by_category": grouped(runs, category, sustain),
            "by_k": grouped(runs, lambda r: [f"k{r['k']}"], sustain),
        },
        "truncation": truncation(base, constrained, seed),
        "accuracy_by_filter": accuracy_by_filter(base, seed),
        "follow_rate": follow(runs),
        "joint_rate": joint(runs),
        "failures": failures["counts"],
        "meta_commentary": failures["meta_commentary"],
        "failure_examples": failures["examples"],
    }


