"""Task registry: a new task is one file plus one line here."""
from __future__ import annotations

from sustain.eval.registry import build
from sustain.eval.tasks.base import Grade, Item, Task

TASKS = {
    "arith": "sustain.eval.tasks.arith:ArithTask",
    "gsm8k": "sustain.eval.tasks.gsm8k:GSM8KTask",
    "hotpotqa": "sustain.eval.tasks.hotpotqa:HotpotQATask",
    "humaneval": "sustain.eval.tasks.humaneval:HumanEvalTask",
}


def get_task(name: str, **options) -> Task:
    """Build a task by name; options (e.g. data path) go to its constructor."""
    return build(TASKS, name, "task", **options)


__all__ = ["Grade", "Item", "Task", "TASKS", "get_task"]
