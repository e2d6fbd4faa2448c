"""GRPO rewards: right, wrong and malformed completions score as expected; names match TRL's log keys."""
from __future__ import annotations

import json

import pytest

from sustain.eval.constraints import make_hard
from sustain.eval.errors import UserError
from sustain.train.rewards import REWARDS, accuracy, answer_format, constrained_accuracy, constraints, get_rewards, think_format


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


TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def test_code_reward_runs_the_tests_and_cannot_be_gamed_by_an_early_exit():
    from sustain.train.rewards import code

    completions = [
        chat("```python\ndef add(a, b):\n    return a + b\n```"),  # right
        chat("```python\ndef add(a, b):\n    return a - b\n```"),  # wrong
        chat("```python\ndef add(a, b) return a +\n```"),  # syntax error
        chat("```python\nimport sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n```"),  # exits before the tests
        chat("```python\nimport os\nos._exit(0)\n```"),  # hard exit
        chat("    return a + b\n"),  # a body that continues the prompt
    ]
    n = len(completions)
    rewards = code(completions, tests=[TESTS] * n, entry_point=["add"] * n,
                   code_prompt=["def add(a, b):\n"] * n)
    assert rewards == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
