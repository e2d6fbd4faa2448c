"""Failure analysis by rules over records: why an output failed, read from its answer region only.

Classes (the first that applies wins):
  truncated      the output hit the token limit
  output_spec    the answer region shows the right answer in a form the grader could not read, or
                 the format itself is gone (a code task's reply holds no code at all)
  code_syntax    the program does not parse
  code_runtime   the program runs but a test fails, raises or times out
  no_answer      the answer region is empty, a template placeholder ("Answer: X"), or only text
                 copied from the prompt
  reasoning      the answer region states an answer and it is wrong

The answer region is the last answer statement ("the answer is ...", "Answer: ...", \\boxed{},
"####"), else the last line (for a numeric gold, the last line holding a number). Intermediate
values, the rest of the working and <think> traces never count: a gold that shows up as a step of
wrong working is a reasoning error, not an output-specification one.

Meta-commentary (talk about the constraint itself) is a flag, reported as a rate in constrained
successes, constrained failures and baseline outputs so that the rates can be compared.
Agreement with hand labels on real model outputs: tests/fixtures/failure_labels/ and the README.
"""
from __future__ import annotations

import re

from sustain.eval.number_words import spelled_forms
from sustain.eval.scoring import proportion
from sustain.eval.tasks import answer_kind_of
from sustain.eval.tasks.answers import NUMBER_RE, clean_number, last_boxed
from sustain.eval.tasks.base import strip_reasoning

META_PATTERNS = re.compile(
    r"\b(as (you )?(requested|instructed|asked)|the (constraint|instruction|requirement)s?\b|"
    r"word (limit|count)|in (all )?lowercase|without (using )?(any )?commas?|"
    r"the (word|keyword)s? [\"'“]?\w+[\"'”]? (is|are|should|must|will) (be )?(repeated|appear|used|included)|"
    r"i (will|must|need to|have to) (keep|use|include|follow|avoid|write|answer|respond)|"
    r"(following|to follow|adhere to|comply with) (the|your) (instruction|constraint|request|format))",
    re.IGNORECASE,
)
CLASSES = ("truncated", "code_syntax", "code_runtime", "output_spec", "reasoning", "no_answer")
CODE_CLASSES = ("code_syntax", "code_runtime")  # for tasks whose answers are programs (Task.answer_kind "code")
# An answer statement: "the answer is", "Answer:", "the answer to the question is:", "#### 42".
MARKER_RE = re.compile(r"\banswer\b[^\n]{0,40}?(?:\bis\b|:)|####", re.IGNORECASE)
# Template echoes: the prompt's "Answer: X" / "The answer is N." taken literally.
PLACEHOLDERS = {"x", "y", "n", "question", "answer", "x y"}
CLOSED_ANSWERS = {"yes", "no"}
NUMBER_WORD_RE = re.compile(r"\b(zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|"
                            r"twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million)\b", re.I)
MIN_COPIED_WORDS = 4  # a final line this long found verbatim in the prompt is quoted context, not an answer


def has_meta_commentary(output: str) -> bool:
    return bool(META_PATTERNS.search(output or ""))


def norm(text: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, whitespace collapsed."""
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def is_number(text) -> bool:
    return bool(re.fullmatch(r"\s*-?[\d,]*\.?\d+\s*", str(text)))


def _numbers(text: str) -> set[float]:
    return {float(clean_number(m)) for m in NUMBER_RE.findall(text.replace("\u2212", "-"))}


def _has_number(text: str) -> bool:
    return bool(_numbers(text) or NUMBER_WORD_RE.search(text))


def _spans(line: str) -> list[str]:
    """What follows each answer marker in a line, last marker first."""
    ends = [m.end() for m in MARKER_RE.finditer(line)]
    return [line[e:].replace("**", "").strip(" \t:*\"'`“”").rstrip(".").strip(" \t\"'`“”") for e in reversed(ends)]


def _copied(line: str, prompt: str) -> bool:
    words = norm(line)
    return len(words.split()) >= MIN_COPIED_WORDS and f" {words} " in f" {norm(prompt)} "


def answer_region(output: str, prompt: str = "", numeric: bool = False) -> str | None:
    """The text where the output states its final answer; None when it states none."""
    text = strip_reasoning(output or "")
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if not MARKER_RE.search(line):
            continue
        for span in _spans(line):
            if numeric and _has_number(span):
                return span
            if not numeric and span and norm(span) not in PLACEHOLDERS:
                return span
            if not numeric and norm(span) in PLACEHOLDERS and span:
                return None  # the final statement is the template itself: no answer given
        before = MARKER_RE.split(line)[0]
        if not numeric and len(norm(before).split()) >= 3:
            return line  # "The Scotch Collie is a landrace breed, and the answer is:" states it before the marker
    if numeric:
        with_numbers = [line for line in lines if _has_number(line)]
        return with_numbers[-1] if with_numbers and not _copied(with_numbers[-1], prompt) else None
    if not lines or MARKER_RE.search(lines[-1]) or _copied(lines[-1], prompt):
        return None
    return lines[-1]


def shows_gold(region: str, gold) -> bool:
    """Whether an answer region states the gold answer, in any form (digits, words, a shortened name)."""
    if region is None or gold is None or str(gold).strip() == "":
        return False
    gold = str(gold)
    if is_number(gold):
        value = float(clean_number(gold.strip()))
        spelled = f" {norm(region)} "
        return value in _numbers(region) or any(f" {norm(f)} " in spelled for f in spelled_forms(gold))
    g, r = norm(gold), norm(region)
    if not g:
        return False
    if g in CLOSED_ANSWERS:
        return r.split()[:1] == [g]
    if f" {g} " in f" {r} ":
        return True
    # a shortened form of the gold name ("Lee Hazlewood" for "Barton Lee Hazlewood")
    gold_words, region_words = g.split(), r.split()
    return bool(region_words) and set(region_words) <= set(gold_words) and len(region_words) * 3 >= len(gold_words) * 2


def is_code_record(record: dict) -> bool:
    """A record of a task whose answers are programs (Task.answer_kind "code"); records of a task this
    installation cannot resolve count as code when their grade says how tests went."""
    kind = answer_kind_of(record)
    return kind == "code" or (kind is None and "tests" in (record.get("detail") or {}))


def prompt_text(record: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in record.get("messages") or [])


def classify(record: dict) -> str:
    """The failure class of a record that did not succeed."""
    if record.get("finish_reason") == "length":
        return "truncated"
    if is_code_record(record):
        reason = str((record.get("detail") or {}).get("reason", "")).lower()
        if reason == "no code":
            return "output_spec"
        return "code_syntax" if "syntax" in reason else "code_runtime"
    gold = record.get("gold")
    kind = answer_kind_of(record)
    numeric = kind == "number" if kind in ("number", "text") else is_number(gold)
    region = answer_region(record.get("output", ""), prompt_text(record), numeric=numeric)
    if region is None or (norm(gold) in CLOSED_ANSWERS and not set(norm(region).split()) & CLOSED_ANSWERS):
        return "no_answer"  # a yes/no question answered with neither yes nor no states no answer
    return "output_spec" if shows_gold(region, gold) else "reasoning"


def meta_rate(records: list[dict], undefined_reason: str, seed: int = 0) -> dict:
    return proportion(records, lambda r: has_meta_commentary(r.get("output", "")), undefined_reason, seed)


def analyse(constrained: list[dict], solved_at_base: set[tuple[str, str]], max_examples: int = 20,
            baseline: list[dict] | None = None, seed: int = 0) -> dict:
    """Counts per class over items solved at baseline that failed constrained, and meta-commentary rates.

    meta_commentary: the rate among constrained successes, constrained failures and baseline outputs
    (each with n and an interval), so a rate among failures can be read against the other two.
    """
    counts = {c: 0 for c in CLASSES}
    examples = []
    runs = [r for r in constrained if (r["task"], r["item_id"]) in solved_at_base]
    for r in runs:
        if r["success"]:
            continue
        cls = classify(r)
        counts[cls] += 1
        if len(examples) < max_examples:
            examples.append(failure_row(r, cls, has_meta_commentary(r.get("output", ""))))
    meta = {
        "constrained_success": meta_rate([r for r in runs if r["success"]], "no constrained successes", seed),
        "constrained_failure": meta_rate([r for r in runs if not r["success"]], "no constrained failures", seed),
        "baseline": meta_rate(baseline or [], "no baseline outputs", seed),
    }
    return {"counts": counts, "meta_commentary": meta, "total": sum(counts.values()), "examples": examples}


def failure_row(r: dict, cls: str, is_meta: bool) -> dict:
    return {
        "task": r["task"],
        "item_id": r["item_id"],
        "condition": r["condition"],
        "class": cls,
        "meta_commentary": is_meta,
        "constraint": r.get("constraint_text", ""),
        "gold": r.get("gold"),
        "answer": r.get("answer"),
        "output": r.get("output", ""),
    }
