"""`arith`: seeded synthetic arithmetic word problems with short worked solutions.

Offline and instant, so tests and the demo can train and evaluate a tiny model end to end.
Item: "Tom has 23 apples and buys 45 more. How many apples does he have?"
Worked solution (Item.meta["solution"]): "23 + 45 = 68. The answer is 68."

Train and test are disjoint on the arithmetic problem itself (op, a, b): a hash of the problem and
the task seed assigns it to one split, so a held-out item is never a rephrased training item.

`train_rows` builds TRL-ready rows and can append self-evident instructions (IFEval-style texts the
worked solution already satisfies) to a fraction of the prompts; a base model pretrained without
them tends to lose solved items as soon as any instruction is appended (measured: it kept ~0 of
200 solved items; with 30% of prompts carrying one, 0.63-0.80).
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable, Sequence

from sustain.eval.errors import UserError
from sustain.eval.tasks.base import Grade, Item, Task, strip_reasoning

NAMES = ("Tom", "Anna", "Ben", "Maria", "Sam", "Lena", "Omar", "Julia", "Ravi", "Emma", "Noah", "Mia")
OBJECTS = ("apples", "books", "coins", "stamps", "marbles", "pencils", "cards", "shells", "stickers", "cookies")

# Templates per operation; {n} name, {o} objects, {a} {b} operands.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "+": (
        "{n} has {a} {o} and buys {b} more. How many {o} does {n} have?",
        "{n} had {a} {o}. A friend gave {n} {b} more. How many {o} does {n} have now?",
        "There are {a} {o} in a box and {b} {o} on the table. How many {o} are there in all?",
    ),
    "-": (
        "{n} has {a} {o} and gives away {b}. How many {o} are left?",
        "{n} had {a} {o} and lost {b} of them. How many {o} does {n} have now?",
        "A shop had {a} {o} and sold {b}. How many {o} does the shop have left?",
    ),
    "*": (
        "{n} has {a} bags with {b} {o} in each bag. How many {o} does {n} have?",
        "There are {a} rows of {o} with {b} {o} in each row. How many {o} are there?",
    ),
}
APPLY: dict[str, Callable[[int, int], int]] = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}

ANSWER_RE = re.compile(r"the answer is\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)
NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def solution_text(a: int, op: str, b: int) -> str:
    """The worked solution the model is trained to write; grading reads its last sentence."""
    result = APPLY[op](a, b)
    return f"{a} {op} {b} = {result}. The answer is {result}."


# ---------------------------------------------------------------- self-evident instructions


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def _sentences(text: str) -> list[str]:
    # a period followed by a digit ("3.5") is not a sentence end
    return [s for s in re.split(r"[.!?]+(?!\d)", text) if s.strip()]


@dataclass(frozen=True)
class Instruction:
    """An IFEval-style instruction that a given worked solution already satisfies.

    render(solution, rng) -> (instruction text, the solution to train on; usually unchanged).
    check(response, text) -> whether a response follows the rendered instruction `text`
    (used by tests to prove the pool is self-evident, and available to training recipes).
    """

    id: str
    render: Callable[[str, random.Random], tuple[str, str]]
    check: Callable[[str, str], bool]


def _max_words(sol, rng):
    return f"Answer with at most {len(_words(sol)) + rng.randint(0, 8)} words.", sol


def _min_words(sol, rng):
    return f"Answer with at least {rng.randint(2, len(_words(sol)))} words.", sol


def _max_sentences(sol, rng):
    return f"Your response should contain at most {len(_sentences(sol)) + rng.randint(0, 2)} sentences.", sol


def _forbidden(sol, rng):
    word = rng.choice([w for w in ("because", "total", "sorry", "maybe", "first", "then") if w not in sol.lower()])
    return f"Do not include the word '{word}' in your response.", sol


def _first_int(text: str) -> int:
    return int(re.search(r"\d+", text).group())


def _quoted(text: str) -> str:
    return re.search(r"'([^']*)'", text).group(1)


INSTRUCTIONS: dict[str, Instruction] = {
    inst.id: inst
    for inst in (
        Instruction("length_constraints:max_words", _max_words, lambda r, t: len(_words(r)) <= _first_int(t)),
        Instruction("length_constraints:min_words", _min_words, lambda r, t: len(_words(r)) >= _first_int(t)),
        Instruction(
            "length_constraints:max_sentences", _max_sentences, lambda r, t: len(_sentences(r)) <= _first_int(t)
        ),
        Instruction(
            "punctuation:no_comma",
            lambda sol, rng: ("Do not use any commas in your response.", sol),
            lambda r, t: "," not in r,
        ),
        Instruction(
            "keywords:existence",
            lambda sol, rng: ("Include the word 'answer' in your response.", sol),
            lambda r, t: _quoted(t) in r.lower(),
        ),
        Instruction("keywords:forbidden_words", _forbidden, lambda r, t: _quoted(t) not in r.lower()),
        Instruction(
            "startend:end_phrase",
            lambda sol, rng: ("Finish your response with a sentence that starts with 'The answer is'.", sol),
            lambda r, t: _sentences(r)[-1].strip().lower().startswith("the answer is") if _sentences(r) else False,
        ),
        Instruction(
            "change_case:lowercase",
            # the only entry that changes the target: a lowercase solution satisfies it
            lambda sol, rng: ("Your entire response should be in lowercase letters.", sol.lower()),
            lambda r, t: r == r.lower(),
        ),
    )
}


def add_instruction(
    prompt: str, solution: str, rng: random.Random, instruction_ids: Sequence[str]
) -> tuple[str, str, str]:
    """Append one instruction drawn from `instruction_ids`: (prompt, solution, instruction id)."""
    inst = INSTRUCTIONS[rng.choice(list(instruction_ids))]
    text, solution = inst.render(solution, rng)
    return f"{prompt}\n\n{text}", solution, inst.id


# ---------------------------------------------------------------- the task


class ArithTask(Task):
    """Synthetic word problems: `ops` from {+, -, *}, operands with `digits` digits.

    seed fixes the train/test partition and the items; test_fraction of all problems are held
    out; test_size is how many items load() returns when no limit is given.
    """

    name = "arith"
    answer_kind = "number"
    generates_train_rows = True

    def __init__(
        self,
        seed: int = 0,
        ops: Sequence[str] | str = ("+",),
        digits: int = 2,
        test_size: int = 500,
        test_fraction: float = 0.1,
    ):
        ops = tuple(ops)
        unknown = [op for op in ops if op not in TEMPLATES]
        if not ops or unknown:
            raise UserError(f"arith: unknown operation(s) {unknown or ops!r}", f"use some of: {', '.join(TEMPLATES)}")
        if not 1 <= int(digits) <= 6:
            raise UserError(f"arith: digits={digits} is out of range", "use 1 to 6 digits")
        if not 0.0 < test_fraction < 1.0:
            raise UserError(f"arith: test_fraction={test_fraction} must be between 0 and 1", "use e.g. 0.1")
        self.seed, self.ops, self.digits = int(seed), ops, int(digits)
        self.test_size, self.test_fraction = int(test_size), float(test_fraction)
        lo = 1 if self.digits == 1 else 10 ** (self.digits - 1)
        self.operand_range = (lo, 10**self.digits - 1)

    # -- partition and sampling

    def split_of(self, op: str, a: int, b: int) -> str:
        """"test" or "train" for a problem; fixed by the task seed alone."""
        digest = hashlib.sha256(f"arith:{self.seed}:{op}:{a}:{b}".encode()).digest()
        return "test" if int.from_bytes(digest[:8], "big") / 2**64 < self.test_fraction else "train"

    def _draw(self, rng: random.Random, split: str) -> tuple[str, int, int]:
        """A random problem of the split (rejection sampling on the hash partition)."""
        for _ in range(100_000):
            op = rng.choice(self.ops)
            a, b = rng.randint(*self.operand_range), rng.randint(*self.operand_range)
            if op == "-" and b > a:
                a, b = b, a  # keep answers non-negative
            if self.split_of(op, a, b) == split:
                return op, a, b
        raise UserError(
            f"arith: no {split} problems for ops={self.ops}, digits={self.digits}, test_fraction={self.test_fraction}",
            "raise digits or use a test_fraction nearer 0.1",
        )

    def _phrase(self, rng: random.Random, op: str, a: int, b: int) -> str:
        template = rng.choice(TEMPLATES[op])
        return template.format(n=rng.choice(NAMES), o=rng.choice(OBJECTS), a=a, b=b)

    def _item(self, item_id: str, prompt: str, op: str, a: int, b: int) -> Item:
        result = APPLY[op](a, b)
        meta = {"solution": solution_text(a, op, b), "op": op, "a": a, "b": b}
        return Item(id=item_id, prompt=prompt, gold=result, meta=meta)

    # -- Task interface

    def load(self, split: str = "test", limit: int | None = None) -> list[Item]:
        """Distinct problems of a split in a fixed order (a prefix does not depend on `limit`)."""
        if split not in ("train", "test"):
            raise UserError(f"arith has no split {split!r}", "use 'train' or 'test'")
        if limit is not None and limit < 0:
            raise UserError(f"limit must be >= 0, got {limit}", "pass a non-negative limit or none")
        n = self.test_size if limit is None else limit
        span = self.operand_range[1] - self.operand_range[0] + 1
        share = self.test_fraction if split == "test" else 1 - self.test_fraction
        most = int(len(self.ops) * span * span * share * 1.2) + 100  # above the split's expected size
        if n > most:  # refused at once: sampling toward an unreachable count would never end
            raise UserError(f"arith: asked for {n} {split} problems, but only about {most} distinct ones exist "
                            f"for ops={self.ops}, digits={self.digits}", "ask for fewer items or raise digits")
        rng = random.Random(f"arith-items:{self.seed}:{split}")
        items, seen, attempts = [], set(), 0
        while len(items) < n:
            attempts += 1
            if attempts > 20 * n + 1000:  # far beyond what a coupon collector needs
                raise UserError(
                    f"arith: only {len(items)} distinct {split} problems exist for ops={self.ops}, digits={self.digits}",
                    "ask for fewer items or raise digits",
                )
            op, a, b = self._draw(rng, split)
            if (op, a, b) in seen:
                continue
            seen.add((op, a, b))
            items.append(self._item(f"{split}-{len(items):05d}", self._phrase(rng, op, a, b), op, a, b))
        return items

    def grade(self, item: Item, output: str) -> Grade:
        """Exact integer match on "The answer is N" (the last one), else on the last number."""
        text = strip_reasoning(output)
        phrased = ANSWER_RE.findall(text)
        if phrased:
            raw, how = phrased[-1], "answer phrase"
        else:
            numbers = NUMBER_RE.findall(text)
            if not numbers:
                return Grade(False, None, 0.0, {"reason": "no answer"})
            raw, how = numbers[-1], "last number"
        answer = raw.replace(",", "").rstrip(".")
        try:
            value = Decimal(answer)
        except InvalidOperation:
            return Grade(False, None, 0.0, {"reason": "no answer"})
        success = value == Decimal(int(item.gold))
        detail = {"extracted_by": how} if success else {"reason": "wrong answer", "extracted_by": how, "expected": item.gold}
        return Grade(success, answer, float(success), detail, explicit=how == "answer phrase")

    # -- training data

    def train_rows(
        self,
        n: int,
        seed: int = 0,
        instruction_rate: float = 0.0,
        instruction_ids: Sequence[str] | None = None,
        format: str = "prompt_completion",
    ) -> list[dict]:
        """n training rows from the train split (problems may repeat with new wording).

        instruction_rate: fraction of prompts that carry an appended self-evident instruction,
        drawn from instruction_ids (default: all of INSTRUCTIONS).
        format: "prompt_completion" ({"prompt": [user], "completion": [assistant]}, TRL trains on
        the completion only), "messages" ({"messages": [user, assistant]}, for assistant_only_loss)
        or "text" ({"prompt": str, "completion": str}, no chat template).
        Every row also has "answer" (the gold number as text) and "instruction_id" ("" if none).
        """
        if format not in ("prompt_completion", "messages", "text"):
            raise UserError(f"arith: unknown row format {format!r}", "use prompt_completion, messages or text")
        if not 0.0 <= instruction_rate <= 1.0:
            raise UserError(f"arith: instruction_rate={instruction_rate} must be in [0, 1]", "use e.g. 0.3")
        ids = list(instruction_ids) if instruction_ids is not None else list(INSTRUCTIONS)
        unknown = [i for i in ids if i not in INSTRUCTIONS]
        if unknown or (instruction_rate > 0 and not ids):
            raise UserError(f"arith: unknown instruction id(s) {unknown}", f"use some of: {', '.join(INSTRUCTIONS)}")
        rng = random.Random(f"arith-train-rows:{self.seed}:{seed}")
        rows = []
        for _ in range(n):
            op, a, b = self._draw(rng, "train")
            prompt, solution, inst_id = self._phrase(rng, op, a, b), solution_text(a, op, b), ""
            if instruction_rate > 0 and rng.random() < instruction_rate:
                prompt, solution, inst_id = add_instruction(prompt, solution, rng, ids)
            row = _row(prompt, solution, format)
            row.update(answer=str(APPLY[op](a, b)), instruction_id=inst_id)
            rows.append(row)
        return rows


def _row(prompt: str, solution: str, format: str) -> dict:
    user, assistant = {"role": "user", "content": prompt}, {"role": "assistant", "content": solution}
    if format == "messages":
        return {"messages": [user, assistant]}
    if format == "text":
        return {"prompt": prompt, "completion": solution}
    return {"prompt": [user], "completion": [assistant]}
