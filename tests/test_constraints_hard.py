"""Rule-based back-translation: kept constraints hold on the original output and fail on a violating one."""
from __future__ import annotations

import re

import pytest

from sustain.eval.constraints import (
    Constraint, check_category, check_hard, choose_constraints, extract_hard, kept_constraints, make_hard, render,
)
from sustain.eval.constraints.hard import HARD_INSTRUCTION_IDS
from sustain.eval.errors import UserError

GSM8K_Q = ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
           "How much did she earn?")
GSM8K_OUT = ("Weng earns 12/60 = $0.2 per minute.\n"
             "Working 50 minutes, she earned 0.2 x 50 = $10.\n"
             "Therefore her total pay for the afternoon comes to $10.\n"
             "#### 10")
ARITH_Q = "Tom has 23 apples and buys 45 more. How many apples does Tom have?"
ARITH_OUT = "23 + 45 = 68. The answer is 68."
CODE_Q = "Write a function that returns True when two numbers in a list are closer than a threshold."
CODE_OUT = '''Here is the implementation:

```python
def has_close_elements(numbers, threshold):
    for i, a in enumerate(numbers):
        for j, b in enumerate(numbers):
            if i != j and abs(a - b) < threshold:
                return True
    return False
```

The function compares every pair of distinct elements and returns early when it finds a close pair.'''
LIST_Q = "Give two tips for staying focused while studying."
LIST_OUT = ("**Tips**\n\n* silence notifications on your phone\n* study in short timed blocks\n"
            "***\nthese habits keep attention steady")

CASES = [(GSM8K_Q, GSM8K_OUT), (ARITH_Q, ARITH_OUT), (CODE_Q, CODE_OUT), (LIST_Q, LIST_OUT)]


def _violate(c: Constraint, out: str) -> str:
    """An edit of the output that breaks exactly what this constraint asks."""
    kw = c.kwargs
    edits = {
        "length_constraints:number_words": lambda: out + " more" * kw.get("num_words", 0),
        "length_constraints:number_sentences": lambda: out + " Extra sentence." * kw.get("num_sentences", 0),
        "length_constraints:number_paragraphs": lambda: out + "\n***\nOne more paragraph.",
        "keywords:existence": lambda: re.sub("|".join(kw.get("keywords", [])), "", out, flags=re.I),
        "keywords:frequency": lambda: re.sub(kw.get("keyword", ""), "", out, flags=re.I),
        "detectable_format:number_bullet_lists": lambda: out + "\n* another point",
        "detectable_format:number_highlighted_sections": lambda: out.replace("*", ""),
        "detectable_format:title": lambda: out.replace("<<", "").replace(">>", ""),
        "change_case:english_lowercase": lambda: out + " Thanks",
        "change_case:english_capital": lambda: out + " thanks",
        "punctuation:no_comma": lambda: out + ", thanks",
        "startend:quotation": lambda: out.strip().strip('"'),
        "startend:end_checker": lambda: out + " Thanks for reading",
    }
    return edits[c.instruction_id]()


@pytest.mark.parametrize("question,output", CASES, ids=["gsm8k", "arith", "code", "list"])
def test_kept_constraints_hold_on_the_output_and_fail_when_violated(question, output):
    records = extract_hard(question, output, seed=3)
    assert records and all(isinstance(r["self_evident"], bool) and r["checked_by"] == "ifeval" for r in records)
    kept = kept_constraints(records)
    assert kept
    for c in kept:
        assert c.family == "hard" and c.instruction_id in HARD_INSTRUCTION_IDS
        assert check_hard(c, output), c.id
        assert not check_hard(c, _violate(c, output)), c.id
        # numbers appear only as counts and bounds, never in words taken from the output (no answer leak)
        taken = [v for v in c.kwargs.values() if isinstance(v, str) and v not in ("less than", "at least")]
        taken += [w for v in c.kwargs.values() if isinstance(v, list) for w in v]
        assert not any(re.search(r"\d", w) for w in taken), c.id


@pytest.mark.parametrize("question,output", CASES, ids=["gsm8k", "arith", "code", "list"])
def test_keywords_come_from_the_output_not_the_question(question, output):
    for c in kept_constraints(extract_hard(question, output, seed=5)):
        words = c.kwargs.get("keywords") or [c.kwargs["keyword"]] if c.category == "keyword" else []
        for w in words:
            assert w.isalpha() and w.lower() in output.lower() and w.lower() not in question.lower()


def test_expected_rules_fire_on_each_kind_of_output():
    def ids(q, o):
        return {c.instruction_id for c in kept_constraints(extract_hard(q, o))}

    assert {"length_constraints:number_words", "length_constraints:number_sentences"} <= ids(GSM8K_Q, GSM8K_OUT)
    assert "keywords:existence" in ids(GSM8K_Q, GSM8K_OUT)  # "therefore", "afternoon"... are not in the question
    assert "startend:end_checker" not in ids(GSM8K_Q, GSM8K_OUT)  # "#### 10" would give the answer away
    assert "punctuation:no_comma" in ids(ARITH_Q, ARITH_OUT)
    assert "keywords:frequency" in ids(CODE_Q, CODE_OUT)  # "enumerate", "elements" appear twice
    assert "startend:end_checker" in ids(CODE_Q, CODE_OUT) and "punctuation:no_comma" not in ids(CODE_Q, CODE_OUT)
    assert {"detectable_format:number_bullet_lists", "length_constraints:number_paragraphs",
            "detectable_format:number_highlighted_sections"} <= ids(LIST_Q, LIST_OUT)


def test_a_candidate_the_verifier_rejects_is_recorded_not_kept():
    # IFEval counts every line starting with "-" as a bullet, the "---" rule too; the rule counts 2.
    out = "- first point\n- second point\n---\nthat is all"
    bullets = [r for r in extract_hard("List two points.", out) if r["constraint"]["instruction_id"] == "detectable_format:number_bullet_lists"]
    assert len(bullets) == 1 and bullets[0]["self_evident"] is False
    assert all(c.instruction_id != "detectable_format:number_bullet_lists"
               for c in kept_constraints(extract_hard("List two points.", out)))


def test_avoided_answer_never_appears_in_a_constraint():
    q, out = "Which city hosts the Louvre?", "The museum stands in central Paris"
    plain = [r["constraint"] for r in extract_hard(q, out)]
    assert any("paris" in c["text"].lower() for c in plain)  # the end phrase would reveal it
    guarded = [r["constraint"] for r in extract_hard(q, out, avoid=["Paris"])]
    assert not any("paris" in c["text"].lower() for c in guarded)


def test_reasoning_trace_is_ignored():
    out = "<think>photosynthesis chlorophyll, commas</think>The total is five"
    kept = kept_constraints(extract_hard("Count them.", out))
    assert not any("photosynthesis" in c.text or "chlorophyll" in c.text for c in kept)
    assert "punctuation:no_comma" in {c.instruction_id for c in kept}


def test_extraction_is_seeded_and_empty_output_gives_nothing():
    assert extract_hard(CODE_Q, CODE_OUT, seed=1) == extract_hard(CODE_Q, CODE_OUT, seed=1)
    assert extract_hard(CODE_Q, "  ") == []


def test_constraint_round_trips_and_rejects_bad_categories():
    c = make_hard("length_constraints:number_words", {"relation": "less than", "num_words": 42})
    assert c.id == "length_constraints:number_words[num_words=42,relation=less than]"
    assert c.text == "Answer with less than 42 words."
    assert Constraint.from_dict(c.to_dict()) == c and hash(c) == hash(Constraint.from_dict(c.to_dict()))
    with pytest.raises(UserError, match="length, keyword, format, method, style, structure"):
        check_category("tone")
    with pytest.raises(UserError, match="family"):
        Constraint(id="x", family="hard", category="style", text="Be brief.")
    with pytest.raises(UserError, match="unknown IFEval instruction id"):
        make_hard("length_constraints:number_pages", {})


def test_choose_constraints_picks_compatible_sets_repeatably():
    kept = kept_constraints(extract_hard(LIST_Q, LIST_OUT, seed=2))
    ids = {c.instruction_id for c in kept}
    assert {"length_constraints:number_paragraphs", "length_constraints:number_sentences"} <= ids  # an IFEval conflict
    for seed in range(20):
        chosen = choose_constraints(kept, len(kept) - 1, seed)
        assert chosen is not None and len({c.instruction_id for c in chosen}) == len(chosen)
        assert not {"length_constraints:number_paragraphs", "length_constraints:number_sentences"} <= {c.instruction_id for c in chosen}
        assert chosen == choose_constraints(list(reversed(kept)), len(kept) - 1, seed)
    assert choose_constraints(kept, len(kept), 0) is None  # the conflicting pair cannot both be in
    assert len({tuple(c.id for c in choose_constraints(kept, 2, s)) for s in range(20)}) > 1
    two = choose_constraints(kept, 2, 0)
    assert render(two) == f"{two[0].text}\n{two[1].text}"


def test_constraint_sets_are_nested_across_k():
    kept = kept_constraints(extract_hard(LIST_Q, LIST_OUT, seed=2))
    for seed in range(20):
        sets = [choose_constraints(kept, k, seed) for k in range(1, len(kept) + 1)]
        sets = [s for s in sets if s]
        assert len(sets) >= 3
        for smaller, larger in zip(sets, sets[1:]):
            assert larger[:len(smaller)] == smaller  # the k set holds the k-1 set, in the same order
