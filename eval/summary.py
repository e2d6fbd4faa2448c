"""summary.json, derived from a run folder's records alone (never edited by hand)."""
from __future__ import annotations

from pathlib import Path

from sustain.eval.constraints.soft_summary import soft_summary
from sustain.eval.errors import UserError
from sustain.eval.failures import analyse
from sustain.eval.grading_figures import accuracy_by_filter, truncation
from sustain.eval.records import write_json_atomic
from sustain.eval.run_files import identity_value, read_json_file, read_run_json, records
from sustain.eval.scoring import grouped, proportion


def write_summary(out: str | Path) -> dict:
    out = Path(out)
    meta = read_run_json(out)
    seed = identity_value(meta, "seed", out)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"{out / 'run.json'}: identity.seed is not a whole number", "restore run.json from the run")
    constrained = records(out, "constrained.jsonl")
    summary = summarise(records(out, "baseline.jsonl"), constrained, seed)
    summary["model"] = identity_value(meta, "model", out)
    summary["sandbox"] = meta.get("sandbox")  # the isolation model-written code ran under (None: no code task)
    soft = soft_summary(records(out, "constraints.jsonl"), constrained)
    if soft is not None:  # where every LLM-written constraint went; empty and unparseable replies included
        summary["soft_constraints"] = soft
    for key in ("attention", "ablation"):  # ablation: the causal ablation (sustain.eval.attention.ablation_stage)
        if (out / f"{key}_summary.json").exists():
            summary[key] = read_json_file(out / f"{key}_summary.json")
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


