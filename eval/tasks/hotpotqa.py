"""HotpotQA, distractor setting: ten titled paragraphs per question; graded by exact match and token F1
after the official answer normalisation."""
from __future__ import annotations

import re
import string
from collections import Counter

from sustain.eval.errors import UserError
from sustain.eval.tasks.short_answer import extract_short_answer
from sustain.eval.tasks.base import Grade, Item, Task, load_rows

HUB_NAME = "hotpotqa/hotpot_qa"
INSTRUCTION = 'Answer the question from the paragraphs. End with a line "Answer: X", where X is a short answer (a name, a few words, or yes/no).'
REQUIRED = {"_id": (str, int), "question": str, "answer": str, "context": list}  # and their types
ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = str.maketrans("", "", string.punctuation)
# Official rule: a yes/no/noanswer prediction or gold only gets F1 credit on an exact match.
CLOSED_ANSWERS = {"yes", "no", "noanswer"}


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace (HotpotQA/SQuAD rule)."""
    return " ".join(ARTICLES_RE.sub(" ", text.lower().translate(PUNCTUATION)).split())


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised answers."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if (pred in CLOSED_ANSWERS or ref in CLOSED_ANSWERS) and pred != ref:
        return 0.0
    common = sum((Counter(pred.split()) & Counter(ref.split())).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred.split()), common / len(ref.split())
    return 2 * precision * recall / (precision + recall)


def from_hub_row(row: dict) -> dict:
    """The hub's columnar fields back into the official JSON shape the local files use."""
    ctx, facts = row["context"], row["supporting_facts"]
    return {
        **row,
        "_id": row["id"],
        "context": [[t, s] for t, s in zip(ctx["title"], ctx["sentences"])],
        "supporting_facts": [[t, i] for t, i in zip(facts["title"], facts["sent_id"])],
    }


def render_prompt(row: dict) -> str:
    paragraphs = "\n\n".join(f"Title: {title}\n{''.join(sentences).strip()}" for title, sentences in row["context"])
    return f"{paragraphs}\n\nQuestion: {row['question']}\n\n{INSTRUCTION}"


class HotpotQATask(Task):
    name = "hotpotqa"
    answer_kind = "text"

    def __init__(self, data: str = HUB_NAME, f1_threshold: float | None = None):
        """data: a hub name, a JSONL file in the official format, or a folder holding <split>.jsonl.

        f1_threshold: None grades success by exact match; a number in (0, 1] counts F1 >= it a success.
        """
        if f1_threshold is not None and not 0 < f1_threshold <= 1:
            raise UserError(f"f1_threshold must be in (0, 1], got {f1_threshold}", "use e.g. 0.5, or leave it unset for exact match")
        self.data = str(data)
        self.f1_threshold = f1_threshold

    def load(self, split: str = "validation", limit: int | None = None) -> list[Item]:
        """The distractor setting has no labelled test split: "test" means the dev (validation) split."""
        if limit is not None and limit < 0:
            raise UserError(f"limit must be >= 0, got {limit}", "pass a non-negative limit or none")
        split = "validation" if split == "test" else split
        rows = load_rows(self.data, split, required=REQUIRED, hub_config="distractor")
        rows = [from_hub_row(r) if "_id" not in r else r for r in rows[:limit]]
        for row in rows:
            if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], list)
                       and all(isinstance(s, str) for s in p[1]) for p in row["context"]):
                raise UserError(f"HotpotQA item {row['_id']!r}: context must be a list of [title, [sentences]]",
                                "use the official HotpotQA JSON format")
        return [
            Item(
                id=str(row["_id"]),
                prompt=render_prompt(row),
                gold=row["answer"],
                meta={k: row[k] for k in ("question", "type", "level", "supporting_facts") if k in row},
            )
            for row in rows
        ]

    def grade(self, item: Item, output: str) -> Grade:
        found = extract_short_answer(output, item.meta.get("question"))
        answer = found.text or ""
        em = normalize_answer(answer) == normalize_answer(item.gold) if found.text else False
        f1 = token_f1(answer, item.gold) if found.text else 0.0
        success = em if self.f1_threshold is None else f1 >= self.f1_threshold
        return Grade(
            success=success,
            answer=found.text,
            score=f1,
            detail={"em": float(em), "f1": f1, "extracted_from": found.source},
            explicit=found.explicit,
        )
