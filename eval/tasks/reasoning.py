"""Remove reasoning traces from a model output before it is graded or checked against a constraint.

Templates in use write the trace between a pair of tags. Three shapes occur:
- a closed block, `<think>...</think>answer` (Qwen3, this project's think_format, OpenR1 data);
- a closing tag with no opening one, `...</think>answer`: R1-distill chat templates put `<think>` in
  the prompt, so the generated text starts inside the trace;
- an opening tag never closed (cut at the token limit): the rest of the output is trace, no answer.
"""
from __future__ import annotations

import re

# (opening, closing) tag pairs, as regexes. The harmony format (gpt-oss) marks its trace as the
# "analysis" channel, ended by <|end|>.
TRACE_TAGS = (
    (r"<think>", r"</think>"),
    (r"<thinking>", r"</thinking>"),
    (r"<reasoning>", r"</reasoning>"),
    (r"<\|begin_of_thought\|>", r"<\|end_of_thought\|>"),
    (r"◁think▷", r"◁/think▷"),
    (r"<\|channel\|>analysis<\|message\|>", r"<\|end\|>"),
)
# Tags that wrap the visible answer: dropped, their content kept.
WRAPPER_RE = re.compile(
    r"<\|begin_of_solution\|>|<\|end_of_solution\|>|<\|start\|>assistant|<\|channel\|>final<\|message\|>|<\|return\|>"
)


def _drop_trace(text: str, opening: str, closing: str) -> str:
    text = re.sub(f"{opening}.*?{closing}", "", text, flags=re.DOTALL)  # closed blocks
    orphan = list(re.finditer(closing, text))
    if orphan:  # the opening tag was in the prompt: everything before the last closing tag is trace
        text = text[orphan[-1].end():]
    return re.sub(f"{opening}.*", "", text, flags=re.DOTALL)  # an unclosed trace runs to the end


def remove_reasoning(text: str) -> str:
    """The output without its reasoning traces, whitespace kept (code bodies keep their indentation)."""
    for opening, closing in TRACE_TAGS:
        if re.search(f"{opening}|{closing}", text):
            text = _drop_trace(text, opening, closing)
    return WRAPPER_RE.sub("", text)


def strip_reasoning(text: str) -> str:
    """The output without its reasoning traces, stripped of surrounding whitespace."""
    return remove_reasoning(text).strip()
