"""Failure classes from the answer region, checked on rules and on hand-labelled real model failures."""
import json
from collections import Counter
from pathlib import Path


from sustain.eval.failures import CLASSES, analyse, answer_region, classify, has_meta_commentary, shows_gold

LABELS = Path(__file__).parent / "fixtures" / "failure_labels" / "smollm2_135m_failures.jsonl"


def rec(**kw):
    base = {"task": "gsm8k", "item_id": "1", "condition": "hard:k1", "success": False, "finish_reason": "stop",
            "gold": "68", "answer": None, "output": "", "detail": {}}
    base.update(kw)
    return base


def test_truncation_first():
    assert classify(rec(finish_reason="length", answer="3", output="23 + 45 = 6")) == "truncated"


def test_gold_as_an_intermediate_value_is_a_reasoning_error():
    out = "First 23 + 45 = 68 apples. Then 68 - 1 = 67.\nThe answer is 67."
    assert classify(rec(answer="67", output=out)) == "reasoning"


def test_output_spec_only_when_the_answer_region_shows_the_gold():
    assert classify(rec(answer="2", output="23 + 45 = 68\nThe answer is 2 + 66 = 68 apples.")) == "output_spec"
    assert classify(rec(answer=None, output="So the answer is sixty-eight.")) == "output_spec"
    assert classify(rec(answer=None, output="<think>23 + 45 = 68</think>\nI cannot say.")) == "no_answer"


def test_qa_answer_region_rules():
    qa = dict(task="hotpotqa", gold="yes", answer="x")
    assert classify(rec(**qa, output="Yes and no are both possible here.\nAnswer: no")) == "reasoning"
    assert classify(rec(**qa, output="No doubt about it, the answer to the question is: yes, both are.")) == "output_spec"
    assert classify(rec(**qa, output="Both are American bands.")) == "no_answer"  # neither yes nor no
    name = dict(task="hotpotqa", gold="Arthur's Magazine", answer="x")
    assert classify(rec(**name, output="Arthur's Magazine came first.\nAnswer: First for Women")) == "reasoning"
    assert classify(rec(**name, output='The answer to the question is: "Arthur\'s Magazine"')) == "output_spec"
    assert classify(rec(**name, output="The answer to the question is: Answer: X")) == "no_answer"
    copied = "Arthur's Magazine was an American literary periodical published in Philadelphia"
    assert classify(rec(**name, output=copied, messages=[{"role": "user", "content": copied + ". Question: ..."}])) == "no_answer"


def test_shortened_gold_names_count_and_longer_wrong_entities_do_not():
    assert shows_gold("Lee Hazlewood", "Barton Lee Hazlewood")
    assert not shows_gold("New York City", "Greenwich Village, New York City")
    assert not shows_gold("the 2014 season", "2015")


def test_answer_region_skips_placeholders_for_numbers():
    out = "So the final load time is 120 minutes.\nThe answer is N."
    assert answer_region(out, numeric=True) == "So the final load time is 120 minutes."


def test_code_classes():
    code = lambda reason: rec(task="humaneval", gold=None, detail={"reason": reason, "tests": "run"})
    assert classify(code("syntax error")) == "code_syntax"
    assert classify(code("failed: AssertionError")) == "code_runtime"
    assert classify(rec(task="humaneval", gold=None, detail={"reason": "no code", "tests": "not run"})) == "output_spec"


def test_code_classes_follow_the_declared_answer_kind_not_the_task_name():
    code = dict(gold="68", answer="23 + 45", output="23 + 45 = 68", detail={"reason": "failed: AssertionError"})
    assert classify(rec(task="mypkg.tasks:MyCodeTask", answer_kind="code", **code)) == "code_runtime"
    assert classify(rec(task="mypkg.tasks:MyCodeTask", answer_kind="number", **code)) == "output_spec"


def test_meta_commentary():
    assert has_meta_commentary("As requested, I will keep it under 20 words: 68")
    assert has_meta_commentary('1. The word "N" is repeated at least 3 times.')
    assert not has_meta_commentary("23 + 45 = 68. The answer is 68.")


def test_meta_commentary_is_a_rate_in_three_groups():
    base = [rec(condition="base", success=True, item_id=str(i), output="68") for i in range(4)]
    runs = [rec(item_id="0", success=True, output="As requested: 68"), rec(item_id="1", success=True, output="68"),
            rec(item_id="2", output="As requested, 67.\nThe answer is 67.", answer="67")]
    result = analyse(runs, {("gsm8k", str(i)) for i in range(4)}, baseline=base)
    meta = result["meta_commentary"]
    assert (meta["constrained_success"]["n"], meta["constrained_success"]["successes"]) == (2, 1)
    assert (meta["constrained_failure"]["n"], meta["constrained_failure"]["successes"]) == (1, 1)
    assert (meta["baseline"]["n"], meta["baseline"]["successes"]) == (4, 0)
    assert result["counts"]["reasoning"] == 1


def labelled() -> list[dict]:
    return [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]


def agreement(rows: list[dict]) -> dict:
    """Per hand-label class: n, how many the classifier put in the same class (recall), and per predicted
    class how many of its picks the hand labels confirm (precision)."""
    pairs = [(r["label"], classify(r["record"])) for r in rows]
    table = {}
    for cls in CLASSES:
        n = sum(h == cls for h, _ in pairs)
        picked = sum(p == cls for _, p in pairs)
        both = sum(h == p == cls for h, p in pairs)
        if n or picked:
            table[cls] = {"n": n, "agree": both, "picked": picked}
    table["all"] = {"n": len(pairs), "agree": sum(h == p for h, p in pairs)}
    return table


def test_hand_labelled_real_failures_agree_with_the_classifier():
    rows = labelled()
    assert len(rows) >= 60 and all(r["label"] in CLASSES for r in rows)
    table = agreement(rows)
    print(json.dumps(table))  # the README's agreement table comes from this line (pytest -s)
    spec = table["output_spec"]
    assert spec["agree"] >= spec["n"] - 1 and spec["picked"] <= spec["agree"] + 2  # output_spec neither missed nor inflated
    assert table["all"]["agree"] >= 0.9 * table["all"]["n"]


def test_gold_anywhere_rule_would_have_inflated_output_spec():
    """The rule this classifier replaced (gold anywhere in the output) disagrees with the hand labels."""
    def gold_anywhere(r):
        gold, out = str(r["gold"]).lower(), r["output"].lower()
        return gold in out and (r["answer"] is None or gold not in str(r["answer"]).lower())
    rows = [r for r in labelled() if r["record"]["finish_reason"] != "length"]
    old = Counter(r["label"] for r in rows if gold_anywhere(r["record"]))
    assert sum(old.values()) - old["output_spec"] >= 5  # real reasoning errors it would have called output_spec
