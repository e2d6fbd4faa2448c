"""Rule-based back-translation: IFEval constraints that a successful output already satisfies.

Rules only PROPOSE candidates from what the output shows (its length, its content words, its
format); the IFEval verifier then decides: a candidate is self-evident only if the verifier passes
it on the original output. Every candidate is returned with its verdict so the run keeps them all.

Both extraction and checking look at the visible answer (reasoning traces removed), so a
constraint is judged on the same text before and after it is added.
"""
from __future__ import annotations

import math
import random
import re
from typing import Iterable

from stop_words import get_stop_words

from sustain.eval.constraints import ifeval_layer
from sustain.eval.constraints.base import Constraint, candidate, hard_id
from sustain.eval.tasks.base import strip_reasoning

STOPWORDS = frozenset(get_stop_words("en"))
MIN_KEYWORD_LEN = 4
MAX_KEYWORD_FREQUENCY = 3  # "at least 3 times" is already a strong ask; higher counts read oddly
END_PHRASE_WORDS = 5

# Every IFEval id a rule below can propose (tests/test_ifeval_agreement.py checks each one).
HARD_INSTRUCTION_IDS = (
    "length_constraints:number_words", "length_constraints:number_sentences", "length_constraints:number_paragraphs",
    "keywords:existence", "keywords:frequency",
    "detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections", "detectable_format:title",
    "change_case:english_lowercase", "change_case:english_capital", "punctuation:no_comma",
    "startend:quotation", "startend:end_checker",
)


def category_of(instruction_id: str) -> str:
    group = instruction_id.split(":", 1)[0]
    return {"length_constraints": "length", "keywords": "keyword"}.get(group, "format")


def make_hard(instruction_id: str, kwargs: dict) -> Constraint:
    """A hard constraint whose text is IFEval's own wording for these kwargs."""
    return Constraint(id=hard_id(instruction_id, kwargs), family="hard", category=category_of(instruction_id),
                      text=ifeval_layer.describe(instruction_id, kwargs), instruction_id=instruction_id, kwargs=dict(kwargs))


def check_hard(constraint: Constraint, output: str) -> bool:
    """Strict IFEval check of one hard constraint on an output (reasoning traces removed)."""
    return ifeval_layer.check(constraint.instruction_id, constraint.kwargs, strip_reasoning(output))


def extract_hard(question: str, output: str, *, seed: int = 0, avoid: Iterable[str] = (), slack: float = 0.2) -> list[dict]:
    """Candidate records (see base.candidate) for every rule that fires on this output.

    avoid: strings the constraints must not reveal (e.g. the gold answer), on top of the rules
    that already skip numbers and words of the question. slack: headroom of the "less than" length
    bounds, as a fraction of the measured length.
    """
    text = strip_reasoning(output)
    if not text:
        return []
    # Seeded by the texts too, so two items with the same seed still get independent picks.
    rng = random.Random(f"{seed}\x00{question}\x00{text}")
    avoid_words = {w for a in avoid for w in re.findall(r"[a-z]+", str(a).lower())}
    proposals = _length(text, slack) + _keywords(question, text, rng, avoid_words) + _format(text, avoid_words)
    records = []
    for instruction_id, kwargs in proposals:
        c = make_hard(instruction_id, kwargs)
        records.append(candidate(c, ifeval_layer.check(instruction_id, kwargs, text), "ifeval"))
    return records


def _length(text: str, slack: float) -> list[tuple[str, dict]]:
    out = []
    words = ifeval_layer.count_words(text)
    if words:
        bound = max(words + 1, 10 * math.ceil(words * (1 + slack) / 10))
        out.append(("length_constraints:number_words", {"relation": "less than", "num_words": bound}))
    sentences = ifeval_layer.count_sentences(text)
    if sentences:
        out.append(("length_constraints:number_sentences",
                    {"relation": "less than", "num_sentences": sentences + max(1, math.ceil(sentences * slack))}))
    if "***" in text:  # IFEval's paragraphs are *** dividers; blank lines do not count
        paragraphs = [p for p in re.split(r"\s?\*\*\*\s?", text) if p.strip()]
        out.append(("length_constraints:number_paragraphs", {"num_paragraphs": len(paragraphs)}))
    return out


def _keywords(question: str, text: str, rng: random.Random, avoid_words: set[str]) -> list[tuple[str, dict]]:
    asked = question.lower()
    pool = []
    for w in re.findall(r"[a-z]+", text.lower()):  # letters only: no numbers, safe as IFEval's regex
        if (len(w) >= MIN_KEYWORD_LEN and w not in STOPWORDS and w not in asked and w not in pool
                and not any(a in w or w in a for a in avoid_words)):
            pool.append(w)
    if not pool:
        return []
    chosen = sorted(rng.sample(pool, min(2, len(pool))))
    out = [("keywords:existence", {"keywords": chosen})]
    # IFEval counts case-insensitive substring matches; measure the same way.
    counts = {w: len(re.findall(w, text, flags=re.IGNORECASE)) for w in pool}
    repeated = [w for w in pool if counts[w] >= 2]
    repeated = [w for w in repeated if w not in chosen] or repeated
    if repeated:
        w = rng.choice(repeated)
        out.append(("keywords:frequency", {"keyword": w, "frequency": min(counts[w], MAX_KEYWORD_FREQUENCY), "relation": "at least"}))
    return out


def _format(text: str, avoid_words: set[str]) -> list[tuple[str, dict]]:
    out = []
    bullets = len(re.findall(r"^\s*[*-]\s", text, flags=re.MULTILINE))
    if bullets:
        out.append(("detectable_format:number_bullet_lists", {"num_bullets": bullets}))
    bold = len(re.findall(r"\*\*[^\n*]+\*\*", text))
    if bold:
        out.append(("detectable_format:number_highlighted_sections", {"num_highlights": bold}))
    if re.search(r"<<[^\n]+>>", text):
        out.append(("detectable_format:title", {}))
    if re.search(r"[a-zA-Z]", text):
        if text == text.lower():
            out.append(("change_case:english_lowercase", {}))
        elif text == text.upper():
            out.append(("change_case:english_capital", {}))
    if "," not in text:
        out.append(("punctuation:no_comma", {}))
    stripped = text.strip()
    if len(stripped) > 1 and stripped[0] == stripped[-1] == '"':
        out.append(("startend:quotation", {}))
    phrase = _end_phrase(text, avoid_words)
    if phrase:
        out.append(("startend:end_checker", {"end_phrase": phrase}))
    return out


def _end_phrase(text: str, avoid_words: set[str]) -> str | None:
    """The output's last few words, unless they give the answer away (digits, avoided words) or are code."""
    last = text.strip().strip('"').splitlines()[-1].strip() if text.strip().strip('"') else ""
    words = last.split()
    phrase = " ".join(words[-END_PHRASE_WORDS:])
    letters = re.findall(r"[a-z]+", phrase.lower())
    if (len(letters) < 2 or re.search(r"\d", phrase) or last.startswith("```")
            or any(w in avoid_words for w in letters)):
        return None
    return phrase
