"""GSM8K grade-school math: the gold is the number after '####'; answers are compared by math-verify."""
from __future__ import annotations

from sustain.eval.errors import UserError
from sustain.eval.tasks.answers import NUMBER_RE, clean_number, extract_math_answer, math_answers_match
from sustain.eval.tasks.base import Grade, Item, Task, load_rows

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
        found = extract_math_answer(output)
        correct = math_answers_match(item.gold, found.text)
        return Grade(
            success=correct,
            answer=found.text,
            score=float(correct),
            detail={"extracted_from": found.source, "gold": item.gold},
        )
