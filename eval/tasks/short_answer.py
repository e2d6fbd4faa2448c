"""Find a short free-text answer (a name, a few words, yes/no) in a model output.

The forms real instruct models write, in the order they are tried:
- `Answer: X` on a line of its own, X possibly followed by an explanation;
- `The answer is X`, `The answer to this question is: "X"` (a quoted span is the answer), nested
  ones (`The answer is: "The answer is: X`) read from the innermost;
- `<answer>X</answer>`;
- a leading `Yes,` / `No,` to a yes/no question;
- the question restated with its blank filled (`... which was founded in 1838.`): a guess;
- the last line: a guess.
Placeholders copied from the instruction ("Answer: X") and markers with nothing after them are no answer.
"""
from __future__ import annotations

import re

from sustain.eval.tasks.answers import ANSWER_MARKER, NOTHING, Extracted
from sustain.eval.tasks.reasoning import strip_reasoning

ANSWER_LINE_RE = re.compile(r"^[ \t*#>-]*(?:final[ \t]+)?answer(?:\*\*)?[ \t]*:[ \t:*]*", re.IGNORECASE | re.MULTILINE)
ANSWER_IS_RE = re.compile(ANSWER_MARKER, re.IGNORECASE)
ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "`": "`", "«": "»"}
# An answer followed by an explanation: cut at the end of the first sentence ("Paris. It is ..."),
# but not at an initial ("S.M. Entertainment", "J. R. R. Tolkien"), or at a clause ("Paris, because").
EXPLANATION_RE = re.compile(r"(?<=[^\s.]{2})[.!?](?=\s+\S)|,?\s+(?:because|since|as it|which is|who is)\b")
PLACEHOLDER_RE = re.compile(r"[A-Z]|[A-Za-z ]+:", re.IGNORECASE)  # "X", "N", "Question:"
YES_NO_QUESTION_RE = re.compile(r"^\s*(?:are|is|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.IGNORECASE)
LEADING_YES_NO_RE = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
WORD_RE = re.compile(r"\w+")
WH_WORDS = {"what", "which", "who", "whom", "whose", "when", "where", "how"}
MIN_RESTATED_WORDS = 4


def tidy_span(span: str) -> str:
    """Drop markdown emphasis, surrounding quotes and a closing period from an answer span."""
    return span.replace("**", "").strip().strip("\"'`“”‘’").strip().rstrip(".").strip()


def span_answer(rest: str) -> str | None:
    """The answer in the text after a marker: a quoted span, else the first sentence; None for nothing."""
    rest = rest.replace("**", "").strip()
    if ANSWER_IS_RE.search(rest) or ANSWER_LINE_RE.search(rest):
        return None  # a nested marker: its own span is read instead
    if rest[:1] in QUOTES:
        close = rest.find(QUOTES[rest[0]], 1)
        span = rest[1:close] if close > 0 else rest[1:]
    else:
        span = rest[:m.start()] if (m := EXPLANATION_RE.search(rest)) else rest
    span = tidy_span(span)
    return None if not span or PLACEHOLDER_RE.fullmatch(span) else span


def _marked(text: str, pattern: re.Pattern) -> str | None:
    """The answer after the last marker of `pattern` that has one; a marker ending its line reads the next line."""
    lines_after = lambda end: text[end:].split("\n")
    for match in reversed(list(pattern.finditer(text))):
        rest, *following = lines_after(match.end())
        if not rest.strip():
            nxt = next((line for line in following if line.strip()), "")
            rest = "" if ANSWER_IS_RE.search(nxt) or ANSWER_LINE_RE.search(nxt) else nxt
        answer = span_answer(rest)
        if answer:
            return answer
    return None


def restated_answer(text: str, question: str) -> str | None:
    """`The X of Y was founded in 1838.` for `The X of Y was founded in what year?`: the words that
    fill the question's wh-blank, when the output repeats at least MIN_RESTATED_WORDS question words first."""
    q_words = [w.lower() for w in WORD_RE.findall(question)]
    for line in reversed([line for line in text.splitlines() if line.strip()]):
        words = list(WORD_RE.finditer(line))
        n = 0
        while n < min(len(words), len(q_words)) and words[n].group().lower() == q_words[n]:
            n += 1
        if n >= MIN_RESTATED_WORDS and n < len(q_words) and q_words[n] in WH_WORDS and n < len(words):
            return span_answer(line[words[n - 1].end():]) or None
        return None  # only the last line is read
    return None


def extract_short_answer(output: str, question: str | None = None) -> Extracted:
    """A short free-text answer, by the forms in the module docstring; `question` enables the
    yes/no and restated-question rules."""
    text = strip_reasoning(output)
    yes_no_question = bool(question and YES_NO_QUESTION_RE.match(question))
    found = [(_marked(text, ANSWER_LINE_RE), "answer_line"), (_marked(text, ANSWER_IS_RE), "answer_is")]
    tags = [span_answer(m.group(1)) for m in ANSWER_TAG_RE.finditer(text)]
    found.append((next((t for t in reversed(tags) if t), None), "answer_tag"))
    if yes_no_question and (lead := LEADING_YES_NO_RE.match(text)):
        marked_yes_no = [a for a, _ in found if a and a.lower() in ("yes", "no")]
        if not marked_yes_no:  # a marked yes/no wins; else the leading word answers the question
            return Extracted(lead.group(1).lower(), "leading_yes_no")
    for answer, source in found:
        if answer:
            return Extracted(answer, source)
    if question and (answer := restated_answer(text, question)):
        return Extracted(answer, "restated")
    lines = [tidy_span(line) for line in text.splitlines()]
    lines = [line for line in lines if line and not ANSWER_IS_RE.search(line + " ")]
    return Extracted(lines[-1], "last_line") if lines else NOTHING
