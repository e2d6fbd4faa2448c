"""Real model outputs with hand-checked verdicts, and the graders' agreement with those verdicts.

The fixture (tests/fixtures/real_outputs/, see its README) holds outputs of SmolLM2-135M-Instruct
with the answer and verdict a person read off each one. `python tests/real_outputs.py` prints the
agreement table that the README quotes.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "real_outputs" / "smollm2-135m-instruct.jsonl"
GUESSED = ("last_number", "last_line", "restated")  # sources where the grader guessed the answer


@dataclass
class Generation:
    text: str
    finish_reason: str


def load_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


def grade_row(row: dict, f1_threshold: float | None = None):
    """The task's grade of one fixture output, the rule for outputs cut at the token limit included."""
    from sustain.eval.tasks.base import Item
    from sustain.eval.tasks.gsm8k import GSM8KTask
    from sustain.eval.tasks.hotpotqa import HotpotQATask

    task = GSM8KTask() if row["task"] == "gsm8k" else HotpotQATask(f1_threshold=f1_threshold)
    item = Item(id=row["item_id"], prompt=row["question"], gold=row["gold"], meta={"question": row["question"]})
    return task.grade_generations([item], [Generation(row["output"], row["finish_reason"])])[0]


def same_answer(row: dict, grade) -> bool:
    """The grader read the answer the person read; 'no answer' agrees with a grader that only guessed."""
    from sustain.eval.tasks.answers import math_answers_match
    from sustain.eval.tasks.hotpotqa import normalize_answer

    hand = row["label"]["answer"]
    if hand is None:
        return grade.answer is None or grade.detail.get("extracted_from") in GUESSED
    if grade.answer is None:
        return False
    if row["task"] == "gsm8k":
        return math_answers_match(hand, grade.answer)
    return normalize_answer(hand) == normalize_answer(grade.answer)


def agreement(rows: list[dict], grades: list) -> dict:
    """Per task: n, verdicts agreeing with the hand label, false positives/negatives, answers agreeing."""
    out = {}
    for task in sorted({r["task"] for r in rows}):
        pairs = [(r, g) for r, g in zip(rows, grades) if r["task"] == task]
        out[task] = {
            "n": len(pairs),
            "hand_solved": sum(r["label"]["solved"] for r, _ in pairs),
            "grader_solved": sum(g.success for _, g in pairs),
            "verdict_agree": sum(g.success == r["label"]["solved"] for r, g in pairs),
            "false_positive": [f"{r['item_id']}/{r['condition']}" for r, g in pairs if g.success and not r["label"]["solved"]],
            "false_negative": [f"{r['item_id']}/{r['condition']}" for r, g in pairs if r["label"]["solved"] and not g.success],
            "answer_agree": sum(same_answer(r, g) for r, g in pairs),
        }
    return out


def main() -> None:
    from sustain.eval.scoring import wilson

    rows = load_rows()
    table = agreement(rows, [grade_row(r) for r in rows])
    print("| task | n | solved (hand / grader) | verdict agreement [95% CI] | answer agreement | false pos. | false neg. |")
    print("|---|---|---|---|---|---|---|")
    for task, a in table.items():
        lo, hi = wilson(a["verdict_agree"], a["n"])
        print(f"| {task} | {a['n']} | {a['hand_solved']} / {a['grader_solved']} | {a['verdict_agree']}/{a['n']} "
              f"[{lo:.3f}, {hi:.3f}] | {a['answer_agree']}/{a['n']} | {len(a['false_positive'])} | {len(a['false_negative'])} |")
        for kind in ("false_positive", "false_negative"):
            if a[kind]:
                print(f"  {task} {kind}: {', '.join(a[kind])}", file=sys.stderr)


if __name__ == "__main__":
    main()
