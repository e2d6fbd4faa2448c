"""Task registry: a new task is one file plus one line here."""
from __future__ import annotations

import inspect
from importlib import import_module

from sustain.eval.registry import build
from sustain.eval.tasks.base import Grade, Item, Task

TASKS = {
    "arith": "sustain.eval.tasks.arith:ArithTask",
    "gsm8k": "sustain.eval.tasks.gsm8k:GSM8KTask",
    "hotpotqa": "sustain.eval.tasks.hotpotqa:HotpotQATask",
    "humaneval": "sustain.eval.tasks.humaneval:HumanEvalTask",
}


#: run-wide grading settings (EvalConfig fields) handed to every task whose constructor takes them.
GRADING_SETTINGS = ("f1_threshold",)


def grading_options(name: str, cfg) -> dict:
    """The GRADING_SETTINGS values of `cfg` that task `name`'s constructor takes."""
    if name not in TASKS:
        return {}
    module, cls = TASKS[name].split(":")
    params = inspect.signature(getattr(import_module(module), cls)).parameters
    return {k: getattr(cfg, k) for k in GRADING_SETTINGS if k in params}


def get_task(name: str, **options) -> Task:
    """Build a task by name; options (e.g. data path) go to its constructor."""
    return build(TASKS, name, "task", **options)


__all__ = ["GRADING_SETTINGS", "Grade", "Item", "Task", "TASKS", "get_task", "grading_options"]
