"""The code-level leak check on LLM-written constraints: a constraint must not give the answer away.

The extraction prompt asks the LLM not to reveal the answer; this checks it. A task says what must
not appear (Task.leak_terms: the gold answer, its numbers and their spelled-out forms, entity names
from the gold, or for code the identifiers the tests call); a constraint containing any of them is
rejected with the reason named, and rejections are counted by reason in the summary.
"""
from __future__ import annotations

import re

from sustain.eval.number_words import spelled_forms

NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# Short or common words are not names even when capitalised in the gold ("The", "Of").
STOPWORDS = set("a an and are as at be by for from in is it of on or the to was were with yes no".split())
# Identifiers a test calls that say nothing about the solution.
COMMON_CALLS = set(
    "abs all any assert bool candidate check dict enumerate filter float int isinstance len list map max min print "
    "range round set sorted str sum tuple zip".split()
)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def _contains_phrase(text: str, phrase: str) -> bool:
    words = " ".join(_words(phrase))
    return bool(words) and f" {words} " in f" {' '.join(_words(text))} "


def answer_terms(gold: str | None) -> dict[str, list[str]]:
    """Terms a constraint must not contain, by reason, for a short gold answer (a number, a name, a phrase)."""
    if gold is None or not str(gold).strip():
        return {}
    gold = str(gold).strip()
    numbers = [n.replace(",", "") for n in NUMBER_RE.findall(gold)]
    only_number = bool(numbers) and re.fullmatch(r"[-\d,.\s$%]+", gold) is not None
    terms = {"gold_answer": [] if only_number else [gold], "gold_number": numbers,
             "gold_number_words": sorted({f for n in numbers for f in spelled_forms(n)})}
    if not only_number:  # a name or phrase: its distinctive words too
        terms["gold_entity"] = [w for w in dict.fromkeys(re.findall(r"[^\W\d_]+", gold))
                                if w.lower() not in STOPWORDS and len(w) >= 3]
    return {k: v for k, v in terms.items() if v}


def called_identifiers(test_code: str, entry_point: str | None = None) -> list[str]:
    """Function and method names a test calls (the entry point first), minus common builtins."""
    names = [entry_point] if entry_point else []
    names += re.findall(r"\b([A-Za-z_]\w*)\s*\(", test_code or "")
    return [n for n in dict.fromkeys(names) if n not in COMMON_CALLS]


def leak_terms(hidden: dict) -> dict[str, list[str]]:
    """Terms by reason from what a task keeps secret (Task.hidden_answer): {"answer": gold text} and/or
    {"test_code": source, "entry_point": name}."""
    terms = answer_terms(hidden.get("answer"))
    if hidden.get("test_code") or hidden.get("entry_point"):
        terms["code_identifier"] = called_identifiers(hidden.get("test_code", ""), hidden.get("entry_point"))
    return {k: v for k, v in terms.items() if v}


def leak_reasons(constraint_text: str, terms: dict[str, list[str]]) -> list[str]:
    """The reasons (keys of `terms`) whose terms appear in the constraint text; [] means no leak."""
    reasons = []
    for reason, values in terms.items():
        for value in values:
            if reason == "gold_number":
                hit = value in {n.replace(",", "").rstrip(".") for n in NUMBER_RE.findall(constraint_text)}
            elif reason == "code_identifier":
                hit = re.search(rf"(?<![\w]){re.escape(value)}(?![\w])", constraint_text) is not None
            else:
                hit = _contains_phrase(constraint_text, value)
            if hit:
                reasons.append(reason)
                break
    return reasons
