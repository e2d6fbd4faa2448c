"""GRPO rewards: plain functions `fn(completions, **columns) -> list[float | None]` in a name registry.

TRL calls each as fn(prompts=..., completions=..., completion_ids=..., trainer_state=..., **dataset
columns) and logs it as rewards/<function name>, so every function is named like its registry key.
For chat data a completion is [{"role": "assistant", "content": ...}]. None means "no reward for this
row" (e.g. an unparseable gold answer); TRL skips it rather than counting it as 0.

Columns the rewards read: `answer` (gold answer text), `constraints` (JSON list of Constraint dicts,
see train/constraint_prompts.py), `tests`, `entry_point` and optional `code_prompt` (code tasks).

Answer extraction and math-verify comparison are the eval's own (eval/tasks/answers.py), so a
reward of 1 means exactly what a solved item means in the SustainScore pipeline.
"""
from __future__ import annotations

import json
import re
from typing import Callable

from sustain.eval.errors import UserError
from sustain.eval.tasks.answers import extract_math_answer, math_answers_match, parse_math
from sustain.eval.tasks.reasoning import remove_reasoning, strip_reasoning

THINK_FORMAT_RE = re.compile(r"^\s*<think>(?!.*<think>).+?</think>\s*\S", re.DOTALL)
ANSWER_FORMAT_RE = re.compile(r"the answer is\s*:?\s*\S", re.IGNORECASE)
CODE_BLOCK_RE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def completion_text(completion) -> str:
    """The text of one completion, conversational ([{"role": "assistant", "content": ...}]) or plain."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")
    return str(completion)


def _texts(completions) -> list[str]:
    return [completion_text(c) for c in completions]


# ---------------------------------------------------------------- the rewards


def accuracy(completions, answer, **_) -> list[float | None]:
    """1 if the final answer equals the gold one (math-verify), 0 if wrong or missing, None if the gold is unparseable."""
    rewards = []
    for text, gold in zip(_texts(completions), answer):
        if not parse_math(str(gold)):
            rewards.append(None)
            continue
        rewards.append(float(math_answers_match(str(gold), extract_math_answer(text).text)))
    return rewards


def think_format(completions, **_) -> list[float]:
    """1 for exactly one leading <think>...</think> block followed by a final answer, else 0."""
    return [float(bool(THINK_FORMAT_RE.match(t))) for t in _texts(completions)]


def answer_format(completions, **_) -> list[float]:
    """1 when the text after any reasoning states "The answer is ...", else 0."""
    return [float(bool(ANSWER_FORMAT_RE.search(strip_reasoning(t)))) for t in _texts(completions)]


def code(completions, tests, entry_point, code_prompt=None, **_) -> list[float]:
    """1 if the completion's code passes the row's tests in the sandbox, else 0.

    Columns: `tests` (defines check(candidate)), `entry_point` (the function under test) and
    optionally `code_prompt` (e.g. HumanEval's signature + docstring, prepended when the completion
    only writes the body). The tests run in eval/sandbox in their own process, which reports a pass
    only when they really ran to the end: a completion that calls sys.exit(0) / os._exit(0) before
    the asserts, or patches the checks, scores 0.
    """
    from sustain.eval.sandbox import Program

    programs = []
    for i, text in enumerate(_texts(completions)):
        text = remove_reasoning(text)  # not strip_reasoning: a bare body keeps its indentation
        blocks = CODE_BLOCK_RE.findall(text)
        body = blocks[-1] if blocks else text
        prefix = code_prompt[i] if code_prompt is not None and code_prompt[i] else ""
        if prefix and f"def {entry_point[i]}" in body:
            prefix = ""  # the completion wrote the whole function
        programs.append(Program(code=prefix + body, test=tests[i], entry_point=entry_point[i], id=str(i)))
    return [float(r.passed) for r in _sandbox().run(programs)]


def constraints(completions, constraints, **_) -> list[float | None]:
    """Fraction of the row's constraints the completion follows (strict IFEval checks); None without constraints."""
    return _follow_fractions(completions, constraints)


def constrained_accuracy(completions, answer, constraints, **kw) -> list[float | None]:
    """The constraint-augmented paradigm: right answer AND constraints followed.

    accuracy x fraction followed, so a wrong answer scores 0 however well it follows the
    constraints, and a right one earns full reward only with every constraint kept.
    """
    acc = accuracy(completions, answer)
    follow = _follow_fractions(completions, constraints)
    return [None if a is None else a * (1.0 if f is None else f) for a, f in zip(acc, follow)]


REWARDS: dict[str, Callable] = {
    fn.__name__: fn for fn in (accuracy, think_format, answer_format, code, constraints, constrained_accuracy)
}


def get_rewards(names: list[str]) -> list[Callable]:
    unknown = [n for n in names if n not in REWARDS]
    if unknown or not names:
        raise UserError(f"unknown reward function {unknown[0] if unknown else '(none given)'!r}",
                        f"set reward_funcs to some of: {', '.join(REWARDS)}")
    return [REWARDS[n] for n in names]


# ---------------------------------------------------------------- helpers


def _follow_fractions(completions, cells) -> list[float | None]:
    from sustain.eval.constraints import check_hard

    fractions = []
    for text, cell in zip(_texts(completions), cells):
        parsed = parse_constraints(cell)
        fractions.append(sum(check_hard(c, text) for c in parsed) / len(parsed) if parsed else None)
    return fractions


def parse_constraints(raw) -> list:
    """A `constraints` cell (a JSON string, a list of dicts, or None) as Constraint objects."""
    from sustain.eval.constraints.base import Constraint

    if raw is None or raw == "":
        return []
    items = json.loads(raw) if isinstance(raw, str) else raw
    return [c if isinstance(c, Constraint) else Constraint.from_dict(c) for c in items]


_SANDBOX = None


def _sandbox():
    """One sandbox per training process: its workers start once, not once per reward call (it closes itself at exit)."""
    global _SANDBOX
    if _SANDBOX is None:
        from sustain.eval.sandbox import Sandbox

        _SANDBOX = Sandbox(workers=2, timeout_s=10)
    return _SANDBOX
