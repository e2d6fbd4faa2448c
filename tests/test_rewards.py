"""GRPO rewards: right, wrong and malformed completions score as expected; names match TRL's log keys."""
from __future__ import annotations

import json

import pytest

from eval.constraints import make_hard
from eval.errors import UserError
from train.rewards import REWARDS, accuracy, answer_format, constrained_accuracy, constraints, get_rewards, think_format


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_registry_names_are_the_logged_names():
    # TRL logs each reward as rewards/<function __name__>; the recipe names them by registry key
    assert all(fn.__name__ == name for name, fn in REWARDS.items())
    assert get_rewards(["accuracy", "answer_format"]) == [accuracy, answer_format]
    with pytest.raises(UserError, match="accuracyy"):
        get_rewards(["accuracyy"])


def test_accuracy_right_wrong_malformed_and_unparseable_gold():
    completions = [
        chat("23 + 45 = 68. The answer is 68."),  # right
        chat("23 + 45 = 67. The answer is 67."),  # wrong
        chat("I am not sure."),  # no answer at all
        chat("<think>23 + 45 = 68</think>\nThe answer is $\\boxed{68}$"),  # right, boxed after reasoning
        "The answer is 2.50",  # plain-text completion, equal under math-verify
        chat("The answer is 68."),  # gold cannot be parsed: no reward rather than a zero
    ]
    gold = ["68", "68", "68", "68", "2.5", "}{"]
    assert accuracy(completions, answer=gold) == [1.0, 0.0, 0.0, 1.0, 1.0, None]


def test_accuracy_ignores_numbers_inside_the_reasoning_trace():
    # the trace mentions the right number, the final answer is wrong
    assert accuracy([chat("<think>maybe 68</think>The answer is 12.")], answer=["68"]) == [0.0]


def test_format_rewards():
    texts = [
        "<think>work</think>\nThe answer is 5.",
        "<think>work</think>",  # nothing after the trace
        "no tags. The answer is 5.",
        "<think>a</think><think>b</think> The answer is 5.",  # two traces
        "<think>unclosed The answer is 5.",
    ]
    assert think_format([chat(t) for t in texts]) == [1.0, 0.0, 0.0, 0.0, 0.0]
    # answer_format reads the text after the reasoning: an answer only inside an unclosed trace does not count
    assert answer_format([chat(t) for t in texts]) == [1.0, 0.0, 1.0, 1.0, 0.0]


def _constraint_cells():
    no_comma = make_hard("punctuation:no_comma", {})
    lowercase = make_hard("change_case:english_lowercase", {})
    return json.dumps([no_comma.to_dict(), lowercase.to_dict()])


def test_constraint_reward_is_the_fraction_followed():
    cell = _constraint_cells()
    completions = [chat("the answer is 68."), chat("The answer is 68."), chat("Well, The answer is 68.")]
    assert constraints(completions, constraints=[cell] * 3) == [1.0, 0.5, 0.0]
    assert constraints([chat("x")], constraints=[None]) == [None]


def test_constrained_accuracy_needs_the_right_answer_too():
    cell = _constraint_cells()
    completions = [
        chat("the answer is 68."),  # right and both constraints kept
        chat("The answer is 68."),  # right, one of two constraints broken
        chat("the answer is 67."),  # constraints kept, answer wrong
    ]
    assert constrained_accuracy(completions, answer=["68"] * 3, constraints=[cell] * 3) == [1.0, 0.5, 0.0]
