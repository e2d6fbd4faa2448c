"""Find the final answer of a math solution, and compare math answers with math-verify.

Each extractor strips reasoning traces first and says where the answer came from (`source`), so a
failure analysis can tell "no answer given" (source None) from "an answer, but wrong", and whether
the output stated it (`explicit`) or the grader guessed it (the last number).
Used by the GSM8K grader and usable as-is by a GRPO accuracy reward.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from math_verify import LatexExtractionConfig, parse, verify

from sustain.eval.tasks.reasoning import strip_reasoning

# A number as models write it: optional minus, thousands commas ("1,234"), decimals. The look-behind
# keeps "3-5" from reading as minus five and "x2" from reading as 2.
NUMBER = r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
NUMBER_RE = re.compile(NUMBER)
# "The answer is", "The final answer:", "The answer to this question is:", "**Answer:**".
ANSWER_MARKER = r"\banswer(?:\s+to\s+(?:this|the)\s+(?:question|problem))?(?:\*\*)?[ \t]*(?:is\b|:)[ \t:*]*"
ANSWER_IS_RE = re.compile(ANSWER_MARKER + r"(?P<rest>[^\n]*)", re.IGNORECASE)
HASHES_RE = re.compile(r"####\s*(?P<rest>[^\n]*)")
ANSWER_TAG_RE = re.compile(r"<answer>(?P<rest>.*?)</answer>", re.DOTALL | re.IGNORECASE)
BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# The end of the answer sentence: . ! ? followed by a space or the end (not a decimal point), or ; .
SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)|;")
# The value of an answer sentence is the end of its leading equation: "2 + 14 = 16" -> 16,
# "N = 2000 + 4000 = 6000" -> 6000, "12/16" -> 12/16. A term is a number (with $ or %) not glued to a
# letter ("2N" is no number); the chain stops at the first word ("540 meters", "30, which ...").
TERM = r"\(?\$?" + NUMBER + r"(?![\w.])%?\)?"
OPERATOR = r"(?:[-+*/×÷^=]|\\times|\\cdot|\\div|x(?=\s))"
CHAIN_RE = re.compile(r"(?:[A-Za-z]\s*=\s*)?(?P<chain>" + TERM + r"(?:\s*" + OPERATOR + r"\s*" + TERM + r")*)")
# Sources that are the output's own statement of its final answer; "last_number" is a guess.
EXPLICIT_SOURCES = ("boxed", "answer_tag", "answer_is", "hashes")
# math-verify gets only the extracted span. Its timeouts use signal.alarm, so in worker threads it
# runs unbounded: there, long spans and powers/factorials (9^{9^{9}} hangs sympy for minutes) are
# not sent to it and grade as wrong.
MAX_MATH_CHARS = 200
UNBOUNDED_COST_RE = re.compile(r"\^|\*\*|!|\\binom|\\choose")
LATEX_ONLY = (LatexExtractionConfig(),)


@dataclass(frozen=True)
class Extracted:
    text: str | None  # the answer; None when the output holds none
    source: str | None  # math: boxed | answer_tag | answer_is | hashes | last_number; QA: see short_answer.py

    @property
    def explicit(self) -> bool:
        """The output stated this answer as final (a guessed last number or last line is not)."""
        return self.source is not None and self.source not in GUESSED_SOURCES


NOTHING = Extracted(None, None)
GUESSED_SOURCES = ("last_number", "last_line", "restated")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (braces matched), or None."""
    starts = [m.end() for m in BOXED_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                content = text[start:i].strip()
                if content:
                    return content
                break
    return None


def clean_number(token: str) -> str:
    """'1,234' -> '1234', '$18' -> '18', '50%' -> '50', '(7)' -> '7'."""
    return token.replace(",", "").strip("$%() ")


def sentence_value(span: str) -> str | None:
    """The value an answer sentence states: the right-hand end of its leading equation, or None."""
    span = span[:m.start()] if (m := SENTENCE_END_RE.search(span)) else span
    chain = CHAIN_RE.match(span.strip().replace("**", ""))
    if not chain:
        return None
    last = re.split(r"\s*=\s*", chain.group("chain"))[-1]
    if NUMBER_RE.fullmatch(clean_number(last)):
        return clean_number(last)
    return re.sub(r"\s+", " ", last.replace(",", "").replace("$", "").replace("%", "")).strip()  # "12/16", "2 + 14"


def stated_math_answer(text: str) -> Extracted:
    """The answer the (reasoning-free) text states: last \\boxed{} > last <answer> tag > last answer
    sentence with a value > last '#### N'; NOTHING when it states none."""
    boxed = last_boxed(text)
    if boxed is not None:
        return Extracted(boxed, "boxed")
    for pattern, source in ((ANSWER_TAG_RE, "answer_tag"), (ANSWER_IS_RE, "answer_is"), (HASHES_RE, "hashes")):
        for match in reversed(list(pattern.finditer(text))):
            value = sentence_value(match.group("rest").strip())
            if value:
                return Extracted(value, source)
    return NOTHING


def last_number(text: str) -> Extracted:
    """The last number anywhere (lm-evaluation-harness's "flexible-extract")."""
    numbers = NUMBER_RE.findall(text)
    return Extracted(clean_number(numbers[-1]), "last_number") if numbers else NOTHING


def extract_math_answer(output: str) -> Extracted:
    """The final answer of a math solution: the stated answer, else (a guess) the last number."""
    text = strip_reasoning(output).replace("\u2212", "-")  # unicode minus
    stated = stated_math_answer(text)
    return stated if stated.text is not None else last_number(text)


def _timeouts() -> int | None:
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    return 2 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=16384)
def parse_math(text: str) -> tuple:
    """math-verify's parse of one answer span; () when it is too long or unparseable."""
    if len(text) > MAX_MATH_CHARS:
        return ()
    return tuple(parse("\\boxed{" + text + "}", extraction_config=LATEX_ONLY, parsing_timeout=_timeouts()))


def math_answers_match(gold: str, answer: str | None) -> bool:
    """math-verify equivalence of an extracted answer to the gold one (2.50 == 2.5, 50\\% == 50).

    Safe in any thread; off the main thread, answers with powers or factorials count as wrong.
    """
    if not answer:
        return False
    if _timeouts() is None and UNBOUNDED_COST_RE.search(answer):
        return False
    gold_parsed, answer_parsed = parse_math(gold), parse_math(answer)
    if not gold_parsed or not answer_parsed:
        return False
    return verify(list(gold_parsed), list(answer_parsed), timeout_seconds=_timeouts())
