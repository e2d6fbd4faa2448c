"""The one Constraint type, the category registry, and the candidate record both families emit."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from sustain.eval.errors import UserError

# category -> family. Hard ones are IFEval instructions checked by code; soft ones are judged by an LLM.
CATEGORIES = {
    "length": "hard",
    "keyword": "hard",
    "format": "hard",
    "method": "soft",
    "style": "soft",
    "structure": "soft",
}
FAMILIES = ("hard", "soft")


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise UserError(f"unknown constraint category {category!r}", f"use one of: {', '.join(CATEGORIES)}")
    return category


def hard_id(instruction_id: str, kwargs: dict) -> str:
    """Stable id, e.g. 'length_constraints:number_words[num_words=60,relation=less than]'."""
    parts = [f"{k}={'|'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in sorted(kwargs.items())]
    return f"{instruction_id}[{','.join(parts)}]"


def soft_id(category: str, text: str) -> str:
    return f"soft:{category}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Constraint:
    id: str
    family: str  # "hard" | "soft"
    category: str  # a key of CATEGORIES
    text: str  # the instruction shown to the model
    instruction_id: str | None = None  # IFEval id for hard constraints, None for soft ones
    kwargs: dict = field(default_factory=dict, hash=False)  # the id already encodes them

    def __post_init__(self):
        check_category(self.category)
        if self.family != CATEGORIES[self.category]:
            raise UserError(
                f"constraint {self.id!r}: category {self.category!r} belongs to family {CATEGORIES[self.category]!r}, not {self.family!r}",
                "fix the family or the category",
            )
        if (self.family == "hard") != (self.instruction_id is not None):
            raise UserError(f"constraint {self.id!r}: hard constraints need an IFEval instruction_id, soft ones none",
                            "set instruction_id only for hard constraints")

    def to_dict(self) -> dict:
        return {"id": self.id, "family": self.family, "category": self.category, "text": self.text,
                "instruction_id": self.instruction_id, "kwargs": json.loads(json.dumps(self.kwargs))}

    @classmethod
    def from_dict(cls, d: dict) -> "Constraint":
        missing = [k for k in ("id", "family", "category", "text") if k not in d]
        if missing:
            raise UserError(f"constraint record lacks {', '.join(missing)}: {str(d)[:120]}", "regenerate the constraints stage")
        return cls(id=d["id"], family=d["family"], category=d["category"], text=d["text"],
                   instruction_id=d.get("instruction_id"), kwargs=dict(d.get("kwargs") or {}))


def candidate(constraint: Constraint | None, self_evident: bool | None, checked_by: str, **extra) -> dict:
    """One candidate record: the constraint (None when extraction itself failed) and its verdict.

    self_evident is True/False when the original output was checked, None when no verdict could be
    had; extra holds e.g. reason="..." or error="timeout" / error="unparseable".
    """
    rec = {"constraint": constraint.to_dict() if constraint else None, "self_evident": self_evident, "checked_by": checked_by}
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec


def kept_constraints(candidates: list[dict]) -> list[Constraint]:
    """The constraints whose original output was verified to satisfy them."""
    return [Constraint.from_dict(c["constraint"]) for c in candidates if c.get("self_evident") is True and c.get("constraint")]
