"""Task registry: a new task is one file plus one line here."""
from __future__ import annotations

from importlib import import_module

from eval.errors import UserError
from eval.tasks.base import Grade, Item, Task

# name -> "module:Class"; imported lazily so one task's dependencies never slow another.
TASKS = {
    "arith": "eval.tasks.arith:ArithTask",
    "gsm8k": "eval.tasks.gsm8k:GSM8KTask",
    "hotpotqa": "eval.tasks.hotpotqa:HotpotQATask",
    "humaneval": "eval.tasks.humaneval:HumanEvalTask",
}


def get_task(name: str, **options) -> Task:
    """Build a task by name; options (e.g. data path) go to its constructor."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}", f"use one of: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    task_cls = getattr(import_module(module), cls)
    try:
        return task_cls(**options)
    except TypeError as exc:  # an option the task does not take
        raise UserError(f"task {name!r}: {exc}", "check the task options in your config") from None


__all__ = ["Grade", "Item", "Task", "TASKS", "get_task"]
