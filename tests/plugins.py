"""A task and a backend that live outside the package, registered by "module:Class" specs
(`--tasks plugins:ExpressionTask`, `--backend plugins:FixedGenerator`); tests/test_plugins.py runs them.

ExpressionTask is a code task on the arithmetic items the tiny model was trained on: the text before the
first "=" ("23 + 45 = 68 ..." -> "23 + 45") is a Python expression, run in the sandbox and checked against
the gold. A constraint that breaks the work breaks the program, which is what the
code failure classes (syntax, runtime) sort.
"""
from __future__ import annotations

from sustain.eval.generators import Generation, Generator, SamplingConfig
from sustain.eval.tasks import Grade, Item, Task, get_task

CHECK = "def check(candidate):\n    assert candidate() == {gold!r}, candidate()\n"


class ExpressionTask(Task):
    name = "expression"
    answer_kind = "code"
    runs_code = True

    def __init__(self, sandbox_workers: int = 1, sandbox: str = "auto", timeout_s: float = 10.0):
        self.sandbox_workers, self.sandbox, self.timeout_s = sandbox_workers, sandbox, timeout_s
        self._sandbox = None

    def load(self, split: str = "test", limit: int | None = None) -> list[Item]:
        return get_task("arith").load(split, limit)

    def grade(self, item: Item, output: str) -> Grade:
        return self.grade_many([item], [output])[0]

    def grade_many(self, items: list[Item], outputs: list[str]) -> list[Grade]:
        from sustain.eval.sandbox import Program, Sandbox

        expressions = [out.split("=", 1)[0].strip() for out in outputs]
        programs = [Program(code=f"def answer():\n    return {expr}\n", test=CHECK.format(gold=int(item.gold)),
                            entry_point="answer", id=item.id) for item, expr in zip(items, expressions)]
        if self._sandbox is None:
            self._sandbox = Sandbox(workers=self.sandbox_workers, timeout_s=self.timeout_s, isolation=self.sandbox)
        results = self._sandbox.run(programs)
        return [Grade(r.passed, expr, float(r.passed), {"reason": r.reason})
                for expr, r in zip(expressions, results)]

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None


class FixedGenerator(Generator):
    """A backend that answers every conversation with the same text; takes only `model` (so the run-wide
    endpoint settings the pipeline offers must not reach it)."""

    calls: list[SamplingConfig] = []

    def __init__(self, model: str):
        self.model_id = f"fixed:{model}"

    def generate(self, conversations: list[list[dict]], cfg: SamplingConfig) -> list[Generation]:
        FixedGenerator.calls.append(cfg)
        return [Generation(text="2 + 2 = 4. The answer is 4.", finish_reason="stop", n_tokens=9) for _ in conversations]


class StoppingTask(Task):
    """Declares a stop string: the pipeline must pass it to the generator."""

    name = "stopping"
    stop = ("\n\nQuestion:",)

    def load(self, split: str = "test", limit: int | None = None) -> list[Item]:
        return [Item(id="q1", prompt="What is 2 + 2?", gold="4")]

    def grade(self, item: Item, output: str) -> Grade:
        ok = "4" in output
        return Grade(ok, "4" if ok else None, float(ok))


class NotATask:
    name = "not-a-task"
