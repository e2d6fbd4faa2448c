"""The causal ablation stage (beyond the paper): does attention to the constraint cause the failures?

Each FAILED constrained generation is regenerated with the attention to the constraint's tokens scaled
DOWN (`factor`, 0 removes it) from decoding step `after_step` on, and graded again: how many recover?
As a control, each SOLVED one is regenerated with it scaled UP (`control_factor`): how many break?
Records go to ablation.jsonl keyed by (task, item, "<condition>|down" or "|up"); resumable like every
stage. The settings are stored in each record and a rerun with other settings is refused, so the
summary never mixes settings.

The control: every regenerated generation is also regenerated with factor = 1 ("|control"), in the
same layout as the ablated run (one unpadded sequence, the scaling wrapper in place with a zero
bias). The originals ran in padded batches, so some flips come from regenerating alone; recovered
and broken are reported net of the control's flips (paired per generation, interval over items).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from sustain.eval import constraints as C
from sustain.eval.attention.ablation import scaled_span_attention
from sustain.eval.attention.run_folder import (
    constrained_records,
    local_generator,
    open_tasks,
    prompt_span,
    refuse_remote,
    run_config,
)
from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError
from sustain.eval.generators import SamplingConfig
from sustain.eval.records import RecordStore, record_key, write_json_atomic
from sustain.eval.scoring import cluster_bootstrap, grouped, proportion

RECORDS = "ablation.jsonl"
SUMMARY = "ablation_summary.json"
CHUNK = 8  # records graded and appended together


@dataclass(frozen=True)
class AblationSettings:
    factor: float = 0.0  # attention scale on failed generations (< 1 moves attention away from the constraint)
    control_factor: float = 4.0  # attention scale on solved generations (> 1 moves attention toward it)
    layers: tuple[int, ...] | None = None  # all layers when None
    after_step: int = 0  # decoding steps before this one are left untouched
    limit: int | None = None  # at most this many generations per direction (the first by key)

    def __post_init__(self):  # fail before any model is loaded, not at the first generation
        for name in ("factor", "control_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"ablation {name} must be a finite number >= 0, got {value}", "pass e.g. 0, 0.5 or 4")
        if self.after_step < 0:
            raise UserError(f"ablation after_step must be >= 0, got {self.after_step}", "pass the steps to leave untouched")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"ablation limit must be at least 1, got {self.limit}", "pass a positive limit or none")

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> "AblationSettings":
        layers = tuple(cfg.ablation_layers) if cfg.ablation_layers is not None else None
        return cls(cfg.ablation_factor, cfg.ablation_control_factor, layers, cfg.ablation_after_step, cfg.ablation_limit)

    def direction(self, solved: bool) -> tuple[str, float]:
        return ("up", self.control_factor) if solved else ("down", self.factor)

    def stored(self, direction: str) -> dict:
        """What a record of `direction` was made with (limit only picks records, it changes none)."""
        factor = {"up": self.control_factor, "down": self.factor, "control": 1.0}[direction]
        return {"factor": factor, "layers": list(self.layers) if self.layers is not None else None,
                "after_step": self.after_step}


def _jobs(constrained: list[dict], settings: AblationSettings) -> list[tuple[dict, str]]:
    jobs: dict[str, list] = {"down": [], "up": []}
    for r in constrained:
        jobs[settings.direction(bool(r["success"]))[0]].append(r)
    if settings.limit is not None:
        jobs = {d: rs[: settings.limit] for d, rs in jobs.items()}
    # each ablated generation has its factor = 1 control, made the same way
    return [(r, d) for d in ("down", "up") for r in jobs[d]] + [(r, "control") for d in ("down", "up") for r in jobs[d]]


def _check_settings(store: RecordStore, settings: AblationSettings) -> None:
    for r in store:
        made = {k: r[k] for k in ("factor", "layers", "after_step")}
        if made != settings.stored(r["direction"]):
            raise UserError(
                f"{store.path} was made with {made} for the '{r['direction']}' runs, not {settings.stored(r['direction'])}",
                "pass the same ablation settings, or move ablation.jsonl away to start a new ablation",
            )


def _followed(constrained: dict, output: str) -> bool | None:
    """Whether the new output still follows every hard constraint (None with soft ones: no judge here)."""
    constraints = [C.Constraint.from_dict(c) for c in constrained.get("constraints", [])]
    if not constraints or any(c.family != "hard" for c in constraints):
        return None
    return all(C.check_hard(c, output) for c in constraints)


def _regenerate(generator, constrained: dict, factor: float, settings: AblationSettings, cfg: EvalConfig):
    """One unpadded generation with the generator's own settings, the span's attention scaled."""
    span = prompt_span(generator, constrained)
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed,
                              batch_size=1)
    with scaled_span_attention(generator.model, (span.start, span.end), len(span.input_ids), factor,
                               settings.layers, settings.after_step):
        return generator.generate([constrained["messages"]], sampling)[0]


def summarise_ablation(records: list[dict], settings: AblationSettings, seed: int = 0) -> dict:
    """recovered: failed generations that succeed with less attention on the constraint; broken: solved ones
    that fail with more. Each a proportion {value, lo, hi, n} (runs of one item clustered)."""
    def scores(rs: list[dict]) -> dict:
        down = [r for r in rs if r["direction"] == "down"]
        up = [r for r in rs if r["direction"] == "up"]
        control = {(r["task"], str(r["item_id"]), r["base_condition"]): r for r in rs if r["direction"] == "control"}
        same_failed = [r for r in control.values() if not r["original_success"]]
        same_solved = [r for r in control.values() if r["original_success"]]
        return {
            "recovered": proportion(down, lambda r: r["success"], "no failed constrained generations", seed),
            # recovered AND still following the constraint: the model did not just drop it
            "recovered_following": proportion(down, lambda r: None if r["followed_all"] is None
                                              else r["success"] and r["followed_all"],
                                              "no failed generations with hard constraints", seed),
            "broken": proportion(up, lambda r: not r["success"], "no solved constrained generations", seed),
            # factor = 1: flips from regenerating alone (layout, numerics), and the scores net of them
            "control_recovered": proportion(same_failed, lambda r: r["success"], "no factor-1 control of failed generations", seed),
            "control_broken": proportion(same_solved, lambda r: not r["success"], "no factor-1 control of solved generations", seed),
            "recovered_net": net_of_control(down, control, lambda r: r["success"], seed),
            "broken_net": net_of_control(up, control, lambda r: not r["success"], seed),
        }

    by_task = sorted({r["task"] for r in records})
    return {
        **scores(records),
        "by_task": {t: scores([r for r in records if r["task"] == t]) for t in by_task},
        "by_condition": grouped(records, lambda r: [r["base_condition"]], scores),
        "settings": {**asdict(settings), "layers": list(settings.layers) if settings.layers is not None else None},
    }


def net_of_control(ablated: list[dict], control: dict, flipped, seed: int = 0) -> dict:
    """Mean over ablated generations of flipped(ablated) - flipped(its factor-1 control), with a 95%
    interval resampling items; generations whose control is missing are left out and counted."""
    by_item: dict[tuple, list[int]] = {}
    missing = 0
    for r in ablated:
        twin = control.get((r["task"], str(r["item_id"]), r["base_condition"]))
        if twin is None:
            missing += 1
            continue
        by_item.setdefault((r["task"], str(r["item_id"])), []).append(int(bool(flipped(r))) - int(bool(flipped(twin))))
    n = sum(len(v) for v in by_item.values())
    if n == 0:
        return {"value": None, "lo": None, "hi": None, "n": 0, "missing_control": missing,
                "reason": "no ablated generation with its factor-1 control"}
    lo, hi = cluster_bootstrap(by_item, seed)  # one item: a point interval, and "items" says so
    return {"value": sum(map(sum, by_item.values())) / n, "lo": lo, "hi": hi, "n": n, "items": len(by_item),
            "missing_control": missing, "interval": "cluster-bootstrap"}


def run_ablation_stage(run_folder: str | Path, generator=None, settings: AblationSettings | None = None) -> dict:
    """Regenerate and grade failed (scaled down) and solved (scaled up) constrained generations of an
    hf-backend run folder; writes ablation.jsonl and ablation_summary.json and returns the summary.
    generator: as for run_attention_stage (an HFGenerator, a function returning one, a model path, or None)."""
    out = Path(run_folder)
    settings = settings or AblationSettings()
    cfg = run_config(out)
    refuse_remote(cfg, out)
    store = RecordStore(out / RECORDS)
    _check_settings(store, settings)
    jobs = [(r, d) for r, d in _jobs(constrained_records(out), settings)
            if (r["task"], str(r["item_id"]), f"{r['condition']}|{d}") not in store]
    if jobs:
        generator = local_generator(cfg, generator)
        tasks = open_tasks(cfg, {r["task"] for r, _ in jobs})
        try:
            items = {name: {it.id: it for it in task.load(cfg.split, cfg.limit)} for name, task in tasks.items()}
            for start in range(0, len(jobs), CHUNK):
                store.append(_run_chunk(jobs[start : start + CHUNK], generator, items, tasks, settings, cfg))
        finally:
            for task in tasks.values():
                task.close()
    wanted = {(r["task"], str(r["item_id"]), f"{r['condition']}|{d}") for r, d in _jobs(constrained_records(out), settings)}
    summary = summarise_ablation([r for r in store if record_key(r) in wanted], settings, cfg.seed)
    write_json_atomic(out / SUMMARY, summary)
    return summary


def _run_chunk(jobs, generator, items, tasks, settings: AblationSettings, cfg: EvalConfig) -> list[dict]:
    picked = []
    for constrained, _direction in jobs:
        item = items[constrained["task"]].get(str(constrained["item_id"]))
        if item is None:
            raise UserError(
                f"item {constrained['item_id']} of task {constrained['task']} is not in the task's data any more",
                "run the ablation with the data the eval used (run.json: data, split, limit)",
            )
        picked.append(item)
    gens = [_regenerate(generator, r, settings.stored(d)["factor"], settings, cfg) for r, d in jobs]
    grades = [None] * len(jobs)
    for name, task in tasks.items():  # one grading call per task: code tasks share their sandbox workers
        idx = [i for i, (r, _) in enumerate(jobs) if r["task"] == name]
        for i, grade in zip(idx, task.grade_generations([picked[i] for i in idx], [gens[i] for i in idx])):
            grades[i] = grade
    return [
        {
            "task": r["task"], "item_id": r["item_id"], "condition": f"{r['condition']}|{d}",
            "base_condition": r["condition"], "direction": d, **settings.stored(d),
            "original_success": r["success"], "output": gen.text, "finish_reason": gen.finish_reason,
            "n_tokens": gen.n_tokens, "followed_all": _followed(r, gen.text), **grade.to_dict(),
        }
        for (r, d), gen, grade in zip(jobs, gens, grades)
    ]
