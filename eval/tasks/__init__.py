"""Task registry: a new task is one file plus one line here (or, from outside the package, a
"module:Class" spec wherever a task name goes)."""
from __future__ import annotations

from sustain.eval.errors import UserError
from sustain.eval.registry import accepted, build, resolve
from sustain.eval.tasks.base import ANSWER_KINDS, Grade, Item, Task

TASKS = {
    "arith": "sustain.eval.tasks.arith:ArithTask",
    "gsm8k": "sustain.eval.tasks.gsm8k:GSM8KTask",
    "hotpotqa": "sustain.eval.tasks.hotpotqa:HotpotQATask",
    "humaneval": "sustain.eval.tasks.humaneval:HumanEvalTask",
}
DEFAULT_TASK = "arith"  # the offline synthetic task: runs anywhere with no data
#: run-wide settings (EvalConfig fields) handed to tasks that declare runs_code.
SANDBOX_SETTINGS = ("sandbox_workers", "sandbox")
#: run-wide grading settings (EvalConfig fields) handed to every task whose constructor takes them.
GRADING_SETTINGS = ("f1_threshold",)


def task_class(name: str) -> type[Task]:
    """The Task class of a registered name or a "module:Class" spec, its declarations checked."""
    cls = resolve(TASKS, name, "task", Task)
    if cls.answer_kind not in ANSWER_KINDS:
        raise UserError(f"task {name!r} declares answer_kind={cls.answer_kind!r}", f"use one of: {', '.join(ANSWER_KINDS)}")
    return cls


def answer_kind_of(record: dict) -> str | None:
    """The answer kind of a graded record: the one it carries, or (records written before tasks declared it)
    its task's declaration; None for a task this installation cannot resolve."""
    if record.get("answer_kind"):
        return record["answer_kind"]
    try:
        return task_class(record["task"]).answer_kind
    except UserError:
        return None


def get_task(name: str, **options) -> Task:
    """Build a task by name; options (e.g. data path) go to its constructor."""
    task_class(name)
    return build(TASKS, name, "task", Task, **options)


def open_task(name: str, cfg) -> Task:
    """A task as every eval stage builds it from an EvalConfig: its data source from cfg.data and, for a
    task that runs code, the sandbox settings its constructor takes; the grading settings it takes. Close it after use."""
    cls = task_class(name)
    options = {"data": cfg.data[name]} if name in cfg.data else {}
    if cls.runs_code:
        options.update(accepted(cls, {k: getattr(cfg, k) for k in SANDBOX_SETTINGS}))
    options.update(accepted(cls, {k: getattr(cfg, k) for k in GRADING_SETTINGS}))
    return get_task(name, **options)


__all__ = ["DEFAULT_TASK", "GRADING_SETTINGS", "answer_kind_of", "Grade", "Item", "SANDBOX_SETTINGS", "TASKS", "Task", "get_task", "open_task", "task_class"]
