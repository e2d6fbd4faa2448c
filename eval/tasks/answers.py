"""Find the final answer in a model output, and compare math answers with math-verify.

Each extractor strips <think> traces first and says where the answer came from (`source`), so a
failure analysis can tell "no answer given" (source None) from "an answer, but wrong".
Used by the GSM8K and HotpotQA graders and usable as-is by a GRPO accuracy reward.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from math_verify import LatexExtractionConfig, parse, verify

from sustain.eval.tasks.base import strip_reasoning

# A number as models write it: optional minus, thousands commas ("1,234"), decimals. The look-behind
# keeps "3-5" from reading as minus five and "x2" from reading as 2.
NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
ANSWER_IS_RE = re.compile(r"\banswer(?:\*\*)?[ \t]*(?:is\b|:)[ \t:*]*(?P<rest>[^\n]*)", re.IGNORECASE)
# The instructed QA format, a line of its own: "Answer: X" (also "Final answer:", "**Answer:**", "- Answer:").
ANSWER_LINE_RE = re.compile(r"^[ \t*#>-]*(?:final[ \t]+)?answer(?:\*\*)?[ \t]*:[ \t:*]*(?P<rest>[^\n]*)", re.IGNORECASE | re.MULTILINE)
HASHES_RE = re.compile(r"####\s*(?P<rest>[^\n]*)")
BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# math-verify gets only the extracted span. Its timeouts use signal.alarm, so in worker threads it
# runs unbounded: there, long spans and powers/factorials (9^{9^{9}} hangs sympy for minutes) are
# not sent to it and grade as wrong.
MAX_MATH_CHARS = 200
UNBOUNDED_COST_RE = re.compile(r"\^|\*\*|!|\\binom|\\choose")
LATEX_ONLY = (LatexExtractionConfig(),)


@dataclass(frozen=True)
class Extracted:
    text: str | None  # the answer; None when the output holds none
    source: str | None  # math: boxed | answer_is | hashes | last_number; QA: answer_line | answer_is | last_line


NOTHING = Extracted(None, None)


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
    """'1,234' -> '1234' (the number regex already left out units, $ and %)."""
    return token.replace(",", "")


def extract_math_answer(output: str) -> Extracted:
    """The final answer of a math solution: last \\boxed{} > last 'answer is N' > '#### N' > last number."""
    text = strip_reasoning(output).replace("\u2212", "-")  # unicode minus
    boxed = last_boxed(text)
    if boxed is not None:
        return Extracted(boxed, "boxed")
    for pattern, source in ((ANSWER_IS_RE, "answer_is"), (HASHES_RE, "hashes")):
        for match in reversed(list(pattern.finditer(text))):
            number = NUMBER_RE.search(match.group("rest"))
            if number:
                return Extracted(clean_number(number.group()), source)
    numbers = NUMBER_RE.findall(text)
    return Extracted(clean_number(numbers[-1]), "last_number") if numbers else NOTHING


def extract_short_answer(output: str) -> Extracted:
    """A short free-text answer: the last 'Answer: X' line > the last 'the answer is X' > the last line.

    'Answer:' lines come first so a trailing remark ("This answer is based on ...") is not taken.
    """
    text = strip_reasoning(output)
    for pattern, source in ((ANSWER_LINE_RE, "answer_line"), (ANSWER_IS_RE, "answer_is")):
        for match in reversed(list(pattern.finditer(text))):
            answer = tidy_span(match.group("rest"))
            if answer:
                return Extracted(answer, source)
    lines = [tidy_span(line) for line in text.splitlines()]
    lines = [line for line in lines if line]
    return Extracted(lines[-1], "last_line") if lines else NOTHING


def tidy_span(span: str) -> str:
    """Drop markdown emphasis, surrounding quotes and a closing period from an answer span."""
    return span.replace("**", "").strip().strip("\"'`").strip().rstrip(".").strip()


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
