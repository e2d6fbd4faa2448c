"""The third paradigm: GRPO on constraint-augmented prompts mined from the policy's own outputs.

Before training, the base policy answers `constraint_pool` training items once (greedy). For every
item it solves, hard constraints that its own output already satisfies are back-translated with
the eval's rules (sustain.eval.constraints.extract_hard, kept only when verified self-evident), k of them
are chosen and appended to the prompt exactly as the eval appends them. Each row keeps the gold
`answer` and the chosen `constraints` (a JSON list of Constraint dicts), so the constrained_accuracy
reward can require the right answer AND the constraints followed.

So the policy is trained on constraints it can provably satisfy while solving; the eval then asks
whether that robustness carries over to held-out items and constraints.

The rows are built once, on the main process, and cached in <output_dir>/constraint_prompts.jsonl:
a restart or the other ranks read the same prompts instead of generating again.
"""
from __future__ import annotations

import json
from pathlib import Path

from sustain.eval.errors import UserError
from sustain.eval.records import RecordStore
from sustain.eval.seeds import stable_seed

from sustain.train.config import GRPOScriptArguments, key_values

CACHE = "constraint_prompts.jsonl"


def mine_rows(task, items, generations: list, k: int, seed: int) -> list[dict]:
    """Rows for the items the policy solved and that yield k compatible self-evident constraints.

    generations: the policy's Generation per item (an output cut at the token limit is solved only
    when it states its answer, as in the eval)."""
    from sustain.eval import constraints as C

    rows = []
    for item, gen, grade in zip(items, generations, task.grade_generations(items, generations)):
        output = gen.text
        if not grade.success:
            continue
        # the gold answer must not leak into a constraint (e.g. "include the word 68")
        kept = C.kept_constraints(C.extract_hard(item.prompt, output, seed=seed, avoid=[str(item.gold)]))
        chosen = C.choose_constraints(kept, k, stable_seed(seed, task.name, item.id, k))
        if not chosen:
            continue
        rows.append({
            "task": task.name, "item_id": item.id, "condition": f"train:k{k}",
            "prompt": task.messages(item, constraint=C.render(chosen)),
            "answer": str(item.gold),
            "constraints": json.dumps([c.to_dict() for c in chosen]),
            "base_output": output,
        })
    return rows


def build(args: GRPOScriptArguments, policy: str) -> list[dict]:
    """Generate with the base policy and mine constraint-augmented rows (see module docstring)."""
    from sustain.eval.generators import DEFAULT_BACKEND, SamplingConfig, make_generator
    from sustain.eval.registry import is_spec
    from sustain.eval.tasks import TASKS, get_task

    if args.dataset not in TASKS and not is_spec(args.dataset):
        raise UserError(f"constraint_prompts needs a task dataset, got {args.dataset!r}",
                        f"set dataset to one of: {', '.join(sorted(TASKS))}")
    options = key_values(args.task_options)
    if args.dataset_path:
        options["data"] = args.dataset_path
    task = get_task(args.dataset, **options)
    items = task.load(args.dataset_split, args.constraint_pool)
    generator = make_generator(DEFAULT_BACKEND, model=policy)  # the policy's weights, in this process
    try:
        sampling = SamplingConfig(max_new_tokens=args.constraint_max_new_tokens, seed=args.constraint_seed,
                                  stop=list(task.stop))
        generations = generator.generate([task.messages(it) for it in items], sampling)
    finally:
        generator.close()
    rows = mine_rows(task, items, generations, args.constraint_k, args.constraint_seed)
    if not rows:
        raise UserError(
            f"the base policy yielded no constraint-augmented prompts from {len(items)} {args.dataset} items "
            "(none solved, or no self-evident constraints)",
            "raise constraint_pool, lower constraint_k, or start from a stronger model",
        )
    return rows


def constraint_dataset(args: GRPOScriptArguments, policy: str, output_dir: str):
    """The GRPO dataset of constraint-augmented prompts (prompt, answer, constraints), cached per run."""
    from accelerate import PartialState
    from datasets import Dataset

    cache = Path(output_dir) / CACHE
    state = PartialState()
    with state.main_process_first():  # rank 0 generates; the others then read its file
        store = RecordStore(cache)
        if state.is_main_process and len(store) == 0:
            store.append(build(args, policy))
    rows = [{"prompt": r["prompt"], "answer": r["answer"], "constraints": r["constraints"]} for r in store]
    if args.dataset_limit is not None:
        rows = rows[: args.dataset_limit]
    return Dataset.from_list(rows)
