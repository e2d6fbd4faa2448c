"""summary.json, derived from a run folder's records alone (never edited by hand)."""
from __future__ import annotations

from pathlib import Path

from sustain.eval.constraints.soft_summary import soft_summary
from sustain.eval.errors import UserError
from sustain.eval.failures import analyse
from sustain.eval.grading_figures import accuracy_by_filter, truncation
from sustain.eval.headline import headline
from sustain.eval.records import write_json_atomic
from sustain.eval.run_files import identity_value, read_json_file, read_run_json, records
from sustain.eval.scoring import grouped, proportion


def write_summary(out: str | Path) -> dict:
    out = Path(out)
    meta = read_run_json(out)
    seed = identity_value(meta, "seed", out)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"{out / 'run.json'}: identity.seed is not a whole number", "restore run.json from the run")
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    constrained, extracted = records(out, "constrained.jsonl"), records(out, "constraints.jsonl")
    summary = summarise(records(out, "baseline.jsonl"), constrained, seed,
                        extracted=extracted, control=records(out, "control.jsonl"),
                        families=config.get("families"), categories=config.get("categories"),
                        k_max=config.get("k_max"))
    summary["model"] = identity_value(meta, "model", out)
    summary["sandbox"] = meta.get("sandbox")  # the isolation model-written code ran under (None: no code task)
    if meta["identity"].get("data_fingerprint"):
        summary["data_fingerprint"] = meta["identity"]["data_fingerprint"]
    soft = soft_summary(extracted, constrained)
    if soft is not None:  # where every LLM-written constraint went; empty and unparseable replies included
        summary["soft_constraints"] = soft
    for key in ("attention", "ablation"):  # ablation: the causal ablation (sustain.eval.attention.ablation_stage)
        if (out / f"{key}_summary.json").exists():
            summary[key] = read_json_file(out / f"{key}_summary.json")
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
