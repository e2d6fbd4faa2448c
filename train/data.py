"""Training data: TRL-ready conversational rows for SFT (prompt + completion) and GRPO (prompt + gold columns).

Sources (`dataset` in the recipe):
- a synthetic eval task (one that declares generates_train_rows, e.g. the default task): rows it
  generates with worked solutions.
- any other eval task (a registry name or a module:Class spec): its train split; SFT trains on the worked solution, GRPO gets
  the task's own prompt and the gold answer as the `answer` column, which TRL hands to the rewards.
- long chain-of-thought sets by hub name (open-r1/OpenR1-Math-220k, simplescaling/s1K-1.1) or a
  local JSONL with `question` and `solution` (and optionally `gold_answer`), e.g. the LIMO traces
  in shared/data/longcot. `dataset_path` points a hub-named set at a local copy.

`think_format` writes completions as `<think>reasoning</think>` + final answer (reasoning models).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sustain.eval.errors import UserError
from sustain.eval.registry import is_spec
from sustain.eval.tasks import TASKS, get_task, task_class
from sustain.eval.tasks.base import load_rows, looks_like_local_path

from sustain.train.config import DataArguments, key_values

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
THINK_SYSTEM_PROMPT = (
    "Think through the problem inside <think> </think> tags, then give the final answer after the closing tag."
)
THINK_RE = re.compile(r"<think>(.*?)</think>(.*)", re.DOTALL)


@dataclass(frozen=True)
class LongCoTFields:
    """Where a long-CoT set keeps each part; `trace` holds reasoning and final answer together."""

    question: str
    gold: str | None = None
    trace: str | None = None  # a string column, or "messages" (the last assistant turn)
    reasoning: str | None = None  # reasoning and final answer in separate columns
    final: str | None = None


LONGCOT_SETS = {
    "open-r1/OpenR1-Math-220k": LongCoTFields(question="problem", gold="answer", trace="messages"),
    "simplescaling/s1K-1.1": LongCoTFields(
        question="question", gold="solution", reasoning="deepseek_thinking_trajectory", final="deepseek_attempt"
    ),
}
LOCAL_LONGCOT = LongCoTFields(question="question", trace="solution", gold="gold_answer")


def sft_dataset(args: DataArguments):
    """A datasets.Dataset with conversational `prompt` and `completion` columns (loss on the completion)."""
    rows = _sft_rows(args)
    return _to_dataset(_limit(rows, args.dataset_limit), args)


def grpo_dataset(args: DataArguments):
    """A datasets.Dataset with a conversational `prompt` and the gold `answer` for the rewards."""
    if _synthetic(args.dataset):
        rows = [{"prompt": r["prompt"], "answer": r["answer"]} for r in _generated_rows(args)]
    elif _is_task(args.dataset):
        task, items = task_items(args)
        rows = [{"prompt": task.messages(it), "answer": str(it.gold)} for it in items]
    else:
        fields = _longcot_fields(args.dataset)
        rows = []
        for i, raw in enumerate(_raw_rows(args, fields)):
            if not fields.gold or raw.get(fields.gold) in (None, ""):
                raise UserError(f"{_source(args)} row {i} lacks column {fields.gold or 'gold_answer'!r} (GRPO needs a gold answer)",
                                "use a dataset with gold answers or train it with SFT")
            user = {"role": "user", "content": f"{raw[fields.question]}\n\n{MATH_INSTRUCTION}"}
            rows.append({"prompt": [user], "answer": str(raw[fields.gold])})
    return _to_dataset(_limit(rows, args.dataset_limit), args)


def task_items(args: DataArguments):
    """(task, items of dataset_split) for an eval task named by `dataset`, honouring dataset_path/task_options."""
    options = key_values(args.task_options)
    if args.dataset_path:
        options["data"] = args.dataset_path
    task = get_task(args.dataset, **options)
    return task, task.load(args.dataset_split, args.dataset_limit)


# ---------------------------------------------------------------- sources


def _is_task(name: str) -> bool:
    return name in TASKS or is_spec(name)


def _synthetic(name: str) -> bool:
    return _is_task(name) and task_class(name).generates_train_rows


def _generated_rows(args: DataArguments) -> list[dict]:
    task = get_task(args.dataset, **key_values(args.task_options))
    return task.train_rows(args.dataset_size, seed=args.dataset_seed, instruction_rate=args.instruction_rate)


def _sft_rows(args: DataArguments) -> list[dict]:
    if _synthetic(args.dataset):
        return [
            {"prompt": r["prompt"], "completion": [_assistant(r["completion"][0]["content"], args.think_format)]}
            for r in _generated_rows(args)
        ]
    if _is_task(args.dataset):
        task, items = task_items(args)
        rows = []
        for it in items:
            if "solution" not in it.meta:
                raise UserError(f"task {args.dataset!r} has no worked solutions to train on", "use it with GRPO instead")
            completion = worked_solution(it.meta["solution"], str(it.gold))
            rows.append({"prompt": task.messages(it), "completion": [_assistant(completion, args.think_format)]})
        return rows
    fields = _longcot_fields(args.dataset)
    rows = []
    for raw in _raw_rows(args, fields):
        reasoning, final = split_trace(raw, fields)
        text = f"<think>\n{reasoning}\n</think>\n\n{final}" if args.think_format else f"{reasoning}\n\n{final}".strip()
        user = {"role": "user", "content": f"{raw[fields.question]}\n\n{MATH_INSTRUCTION}"}
        rows.append({"prompt": [user], "completion": [{"role": "assistant", "content": text}]})
    return rows


def _longcot_fields(name: str) -> LongCoTFields:
    if name in LONGCOT_SETS:
        return LONGCOT_SETS[name]
    if looks_like_local_path(name):
        return LOCAL_LONGCOT
    raise UserError(
        f"unknown dataset {name!r}",
        f"use a task ({', '.join(sorted(TASKS))}), one of {', '.join(LONGCOT_SETS)}, or a local .jsonl file",
    )


def _source(args: DataArguments) -> str:
    return args.dataset_path or args.dataset


def _raw_rows(args: DataArguments, fields: LongCoTFields) -> list[dict]:
    source = _source(args)
    config = None if looks_like_local_path(source) else "default"
    rows = load_rows(source, args.dataset_split, hub_config=config if source == "open-r1/OpenR1-Math-220k" else None)
    needed = [c for c in (fields.question, fields.trace, fields.reasoning) if c]
    for i, row in enumerate(rows):
        missing = [c for c in needed if c not in row]
        if missing:
            where = source if looks_like_local_path(source) else f"hub dataset {source}"
            raise UserError(f"{where} row {i} lacks column {missing[0]!r}", f"each row needs: {', '.join(needed)}")
    return rows


def split_trace(row: dict, fields: LongCoTFields) -> tuple[str, str]:
    """(reasoning, final answer) of a long-CoT row, whatever way the set stores them."""
    gold = row.get(fields.gold) if fields.gold else None
    if fields.reasoning:
        return str(row[fields.reasoning]).strip(), str(row.get(fields.final) or "").strip()
    trace = row[fields.trace]
    if fields.trace == "messages":
        trace = next((m["content"] for m in reversed(trace) if m.get("role") == "assistant"), "")
    trace = str(trace).strip()
    tagged = THINK_RE.search(trace)
    if tagged:
        return tagged.group(1).strip(), tagged.group(2).strip()
    head, marker, tail = trace.rpartition("**Final Answer**")
    if marker:
        return head.strip(), f"{marker}{tail}".strip()
    return trace, f"The answer is $\\boxed{{{gold}}}$." if gold not in (None, "") else ""


def worked_solution(solution: str, gold: str) -> str:
    """A task's reference solution as the model should write it: GSM8K's '<<48/2=24>>' calculator
    notes dropped and its '#### N' line turned into the 'The answer is N.' the graders read."""
    text = re.sub(r"<<[^>]*>>", "", solution)
    head, marker, _ = text.rpartition("####")
    if marker:
        text = f"{head.rstrip()}\nThe answer is {gold}."
    return text.strip()


def _assistant(text: str, think: bool) -> dict:
    if think:  # a short worked solution: the work is the reasoning, "The answer is N." the final part
        work, marker, answer = text.rpartition("The answer is")
        text = f"<think>\n{work.strip()}\n</think>\n\n{marker}{answer}".strip() if marker else f"<think>\n{text}\n</think>"
    return {"role": "assistant", "content": text}


def _limit(rows: list[dict], limit: int | None) -> list[dict]:
    if not rows:
        raise UserError("the training dataset is empty", "check dataset, dataset_split and dataset_limit")
    return rows[:limit] if limit is not None else rows


def _to_dataset(rows: list[dict], args: DataArguments):
    from datasets import Dataset

    system = args.system_prompt or (THINK_SYSTEM_PROMPT if args.think_format else None)
    if system:
        for row in rows:
            if row["prompt"] and row["prompt"][0]["role"] == "system":
                row["prompt"][0] = {"role": "system", "content": f"{row['prompt'][0]['content']}\n\n{system}"}
            else:
                row["prompt"] = [{"role": "system", "content": system}, *row["prompt"]]
    return Dataset.from_list(rows)
