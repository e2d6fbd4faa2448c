"""Reasoning traces are removed for every template in use, and outputs cut at the token limit are
solved only when they state their answer."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from sustain.eval.tasks import get_task
from sustain.eval.tasks.base import Grade, Item, finished_part, judge_cut_output
from sustain.eval.tasks.reasoning import remove_reasoning, strip_reasoning


@pytest.mark.parametrize(
    "output, visible",
    [
        ("<think>It is 41.</think>The answer is 42.", "The answer is 42."),
        ("<think>\nfirst\n</think>\n\n<think>second</think>\nThe answer is 42.", "The answer is 42."),
        # R1-distill templates open <think> in the prompt: the output has only the closing tag
        ("Okay, so 6 * 7 is 41? No, 42.\n</think>\n\nThe answer is 42.", "The answer is 42."),
        ("<think>Cut at the limit, the answer is 41", ""),
        ("<thinking>41?</thinking>The answer is 42.", "The answer is 42."),
        ("<reasoning>41?</reasoning>\n<answer>42</answer>", "<answer>42</answer>"),
        ("<|begin_of_thought|>41?<|end_of_thought|>\n<|begin_of_solution|>The answer is 42.<|end_of_solution|>",
         "The answer is 42."),
        ("◁think▷41?◁/think▷The answer is 42.", "The answer is 42."),
        ("<|channel|>analysis<|message|>41?<|end|><|start|>assistant<|channel|>final<|message|>The answer is 42.<|return|>",
         "The answer is 42."),
        ("<think></think>The answer is 42.", "The answer is 42."),  # Qwen3 with thinking off
        ("The answer is 42.", "The answer is 42."),
    ],
)
def test_traces_of_every_template_are_removed(output, visible):
    assert strip_reasoning(output) == visible


def test_remove_reasoning_keeps_the_indentation_of_a_bare_code_body():
    assert remove_reasoning("<think>plan</think>    return x + 1\n") == "    return x + 1\n"


@pytest.mark.parametrize(
    "task, gold, output",
    [
        ("gsm8k", "42", "Okay, the answer is 41.\n</think>\nThe answer is 42."),
        ("hotpotqa", "yes", "Answer: no? Let me check.\n</think>\nAnswer: yes"),
        ("arith", None, "The answer is 1.</think>The answer is {gold}."),
    ],
)
def test_graders_read_the_answer_after_an_orphan_closing_tag(task, gold, output):
    t = get_task(task)
    item = t.load(limit=1)[0] if task == "arith" else Item(id="x", prompt="q", gold=gold)
    grade = t.grade(item, output.format(gold=item.gold))
    assert grade.success and grade.explicit


@dataclass
class Gen:
    text: str
    finish_reason: str


def test_a_guessed_answer_in_a_cut_output_is_never_solved():
    gsm8k = get_task("gsm8k")
    item = Item(id="x", prompt="q", gold="20")
    loop = "We can do this by multiplying 20 by 3, which gives us 60.\n\nSo, we need 20"
    cut, stopped = gsm8k.grade_generations([item, item], [Gen(loop + " cups.", "length"), Gen(loop + " cups.", "stop")])
    assert (cut.success, cut.score, cut.detail["cut_before_answer"]) == (False, 0.0, True)
    assert stopped.success and not stopped.explicit  # the same guess in a finished output still counts


def test_a_cut_output_is_graded_on_its_finished_part():
    gsm8k = get_task("gsm8k")
    item = Item(id="x", prompt="q", gold="15")
    stated = gsm8k.grade_generations([item], [Gen("The answer is 15.\n\nThe answer is 15", "length")])[0]
    unfinished = gsm8k.grade_generations([item], [Gen("Let me see.\nThe answer is 15", "length")])[0]
    assert stated.success and stated.explicit  # a stated answer before the cut counts
    assert not unfinished.success  # "The answer is 15" may have gone on to 150
    assert finished_part("One. Two\nThree") == "One. Two\n" and finished_part("no end") == ""


def test_the_cut_rule_leaves_explicit_and_finished_grades_alone():
    assert judge_cut_output(Grade(True, "7", 1.0, explicit=True), "length").success
    assert judge_cut_output(Grade(True, "7", 1.0, explicit=False), "stop").success
    assert not judge_cut_output(Grade(True, "7", 1.0, explicit=False), "length").success
