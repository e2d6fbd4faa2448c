"""GSM8K grade-school math: the gold is the number after '####'; answers are compared by math-verify.

Besides the grade, each record says how lm-evaluation-harness's two GSM8K filters, as named there,
judge the output: "strict-match" (only an answer the output states: answer sentence, box, '####')
and "flexible-extract" (the last number anywhere).
"""
from __future__ import annotations

from sustain.eval.errors import UserError
from sustain.eval.tasks.answers import (
    NUMBER_RE, clean_number, last_number, math_answers_match, stated_math_answer,
)
from sustain.eval.tasks.base import Grade, Item, Task, load_rows, strip_reasoning

HUB_NAME = "openai/gsm8k"
INSTRUCTION = 'Solve the problem step by step. End with "The answer is N." where N is the final number.'


def gold_number(solution: str) -> str:
    """The number after the '####' line of a GSM8K solution ('1,600' -> '1600')."""
    _, marker, tail = solution.rpartition("####")
    number = NUMBER_RE.search(tail) if marker else None
    if not number:
        raise UserError(f"GSM8K solution has no '#### N' line: {solution[-60:]!r}", "use the original GSM8K answer field")
    return clean_number(number.group())


class GSM8KTask(Task):
    name = "gsm8k"
    answer_kind = "number"

    def __init__(self, data: str = HUB_NAME):
        """data: a hub dataset name, a JSONL file, or a folder holding <split>.jsonl (e.g. shared/data/gsm8k)."""
        self.data = str(data)

    def load(self, split: str = "test", limit: int | None = None) -> list[Item]:
        if limit is not None and limit < 0:
            raise UserError(f"limit must be >= 0, got {limit}", "pass a non-negative limit or none")
        rows = load_rows(self.data, split, required={"question": str, "answer": str}, hub_config="main")
        return [
            Item(
                id=str(i),
                prompt=f"{row['question']}\n\n{INSTRUCTION}",
                gold=gold_number(row["answer"]),
                meta={"question": row["question"], "solution": row["answer"]},
            )
            for i, row in enumerate(rows[:limit])
        ]

    def grade(self, item: Item, output: str) -> Grade:
        """The stated answer if there is one, else the last number (a guess: never solves a cut output)."""
        text = strip_reasoning(output).replace("\u2212", "-")  # unicode minus
        stated, guessed = stated_math_answer(text), last_number(text)
        strict = math_answers_match(item.gold, stated.text)
        flexible = strict if stated.text == guessed.text else math_answers_match(item.gold, guessed.text)
        found, correct = (stated, strict) if stated.text is not None else (guessed, flexible)
        return Grade(
            success=correct,
            answer=found.text,
            score=float(correct),
            detail={"extracted_from": found.source, "gold": item.gold,
                    "filters": {"strict-match": strict, "flexible-extract": flexible}},
            explicit=found.explicit,
        )
