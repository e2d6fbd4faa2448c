import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from sustain.eval.errors import UserError
from sustain.eval.tasks.answers import extract_math_answer, math_answers_match
from sustain.eval.tasks.base import Item
from sustain.eval.tasks.gsm8k import GSM8KTask
from conftest import ROOT, need_data


@pytest.fixture(scope="module")
def test_items():
    task = GSM8KTask(data=str(need_data("gsm8k/test.jsonl")))
    return task, task.load()


def item(gold: str) -> Item:
    return Item(id="x", prompt="q", gold=gold)


def test_all_gold_solutions_grade_correct(test_items):
    task, items = test_items
    assert len(items) == 1319
    grades = [task.grade(it, it.meta["solution"]) for it in items]
    failed = [it.id for it, g in zip(items, grades) if not g.success]
    assert failed == []
    assert all(g.answer == it.gold and g.detail["extracted_from"] == "hashes" for it, g in zip(items, grades))


def test_gold_solutions_with_a_changed_final_number_grade_wrong(test_items):
    task, items = test_items
    for it in items:
        head, _, _ = it.meta["solution"].rpartition("####")
        altered = f"{head}#### {int(it.gold) + 1}"
        grade = task.grade(it, altered)
        assert not grade.success and grade.score == 0.0, it.id
        assert grade.answer == str(int(it.gold) + 1)


def test_gold_keeps_negatives_and_drops_commas(test_items):
    _, items = test_items
    golds = {it.gold for it in items}
    assert {"-10", "-3", "1450000"} <= golds
    assert all(re.fullmatch(r"-?\d+", g) for g in golds)


@pytest.mark.parametrize(
    "gold, output, answer, source",
    [
        ("1234", "So we get 1,000 + 234.\nThe answer is $1,234.", "1234", "answer_is"),
        ("18", "She makes 9 * 2 = 18 dollars.\n\\boxed{18}", "18", "boxed"),
        ("18", "Final: $\\boxed{\\$18}$ per day, not 20", "\\$18", "boxed"),
        ("18", "\\boxed{18 \\text{ dollars}}", "18 \\text{ dollars}", "boxed"),
        ("7", "\\boxed{\\frac{14}{2}}", "\\frac{14}{2}", "boxed"),
        ("18", "The answer is 18 dollars.", "18", "answer_is"),
        ("25", "The answer is: 25 cm", "25", "answer_is"),
        ("50", "So the discount is 50%.", "50", "last_number"),
        ("-10", "The temperature ends at -10 degrees. The answer is -10.", "-10", "answer_is"),
        ("-3", "The answer is \u22123", "-3", "answer_is"),
        ("2.5", "Each costs $2.50.\nThe answer is 2.50", "2.50", "answer_is"),
        ("2.5", "The answer is 2.5.", "2.5", "answer_is"),
        ("1600", "#### 1,600", "1600", "hashes"),
        ("42", "<think>Maybe 41? The answer is 41.</think>The answer is 42.", "42", "answer_is"),
        ("42", "<think>The answer is 41</think>\nAfter checking, it is 42", "42", "last_number"),
        ("5", "**Answer:** 5 apples", "5", "answer_is"),
        ("9", "16-3-4 = 9", "9", "last_number"),
    ],
)
def test_robust_extraction_grades_correct(gold, output, answer, source):
    grade = GSM8KTask().grade(item(gold), output)
    assert (grade.success, grade.answer, grade.detail["extracted_from"]) == (True, answer, source)


@pytest.mark.parametrize(
    "gold, output",
    [
        ("18", "The answer is 19."),
        ("2.5", "The answer is 25"),
        ("-10", "The answer is 10"),
        ("18", "\\boxed{17} even though 18 appears later"),
        ("1234", "The answer is 1,235"),
    ],
)
def test_wrong_answers_grade_wrong_with_the_answer_recorded(gold, output):
    grade = GSM8KTask().grade(item(gold), output)
    assert not grade.success and grade.answer is not None and grade.detail["extracted_from"] is not None


@pytest.mark.parametrize("output", ["", "I am not sure.", "<think>It is 18 because 9 * 2"])
def test_no_extractable_answer_is_told_apart_from_a_wrong_one(output):
    grade = GSM8KTask().grade(item("18"), output)
    assert (grade.success, grade.answer, grade.detail["extracted_from"]) == (False, None, None)


def test_answer_phrase_without_a_number_falls_through_to_later_rules():
    assert extract_math_answer("The answer is below.\n#### 7").source == "hashes"
    assert extract_math_answer("3-5 people, then 12").text == "12"


def test_grading_works_off_the_main_thread_and_agrees(test_items):
    # math-verify's signal-based timeout would raise in worker threads (GRPO rewards, thread pools).
    task, items = test_items
    items = items[:50]
    outputs = [f"The answer is {it.gold}" if i % 2 else "The answer is 0.5" for i, it in enumerate(items)]
    main = [task.grade(it, out).success for it, out in zip(items, outputs)]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(lambda pair: task.grade(*pair).success, zip(items, outputs)))
    assert threaded == main and any(main) and not all(main)


def test_folder_source_reads_the_split_file_and_limit_keeps_the_first():
    folder = need_data("gsm8k/test.jsonl").parent
    items = GSM8KTask(data=str(folder)).load("test", limit=3)
    assert [it.id for it in items] == ["0", "1", "2"]
    assert items[0].gold == "18" and "Janet" in items[0].prompt and "The answer is" in items[0].prompt


def test_negative_limit_is_a_user_error():
    with pytest.raises(UserError, match="limit must be >= 0"):
        GSM8KTask(data="/nonexistent/x.jsonl").load(limit=-1)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data file not found"):
        GSM8KTask(data=str(tmp_path / "missing.jsonl")).load()


def test_line_without_answer_field_is_a_user_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n" + json.dumps({"question": "2+2?"}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2 lacks field\(s\) answer"):
        GSM8KTask(data=str(path)).load()


def test_solution_without_final_marker_is_a_user_error(tmp_path):
    path = tmp_path / "nomarker.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "It is 2."}) + "\n")
    with pytest.raises(UserError, match="no '#### N' line"):
        GSM8KTask(data=str(path)).load()


def test_unreachable_hub_is_a_one_line_user_error(tmp_path):
    # Offline mode and an empty cache make the hub path fail the way it does on a machine without network.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    code = "from sustain.eval.tasks.gsm8k import GSM8KTask\ntry:\n GSM8KTask().load()\nexcept Exception as e:\n print(type(e).__name__, e)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("UserError the hub is unreachable for dataset 'openai/gsm8k'"), out.stdout + out.stderr
    assert "pass a local JSONL path" in out.stdout and len(out.stdout.strip().splitlines()) == 1


def test_powers_are_verified_in_the_main_thread():
    assert math_answers_match("1024", "2^{10}")


@pytest.mark.timeout(60)
def test_a_power_tower_cannot_hang_a_worker_thread():
    # Without its signal timeout math-verify would spend minutes on this; it must come back at once.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(math_answers_match, "18", "9^{9^{9}}").result(timeout=30) is False
        assert pool.submit(math_answers_match, "18", "18").result(timeout=30) is True


@pytest.mark.parametrize(
    "gold, output, answer",
    [
        # the value of the answer sentence is the end of its equation (SmolLM2-135M-Instruct wrote these)
        ("16", "The answer is 2 + 14 = 16.", "16"),
        ("19.25", "The answer is 1.15 * 12.15 = 19.25.\n\nThe final number is 19.25.", "19.25"),
        ("6000", "The answer is N = 2000 + 4000 = 6000.\n\nSo, John spent $6000 on blue ties.", "6000"),
        ("42", "The answer is 14 + 28 = 42 hours.", "42"),
        ("30", "The answer is 30% of 100% = 30, which is the final number.", "30"),
        ("5", "The answer is 5, because 2 + 3 = 5 and 10 = 2 * 5.", "5"),
        ("12", "The answer is 12 miles / hour.", "12"),
        ("19", "The answer is N, which is the final number.\n\nSo, the answer is 19.", "19"),
        ("8", "So, the answer is 8. The answer is N.", "8"),
        ("0.75", "The answer is 12/16.", "12/16"),
        ("20", "The answer is 4 x 5 = 20.", "20"),
    ],
)
def test_the_answer_sentence_gives_its_final_value(gold, output, answer):
    grade = GSM8KTask().grade(item(gold), output)
    assert (grade.success, grade.answer, grade.detail["extracted_from"], grade.explicit) == (True, answer, "answer_is", True)


def test_a_placeholder_answer_sentence_states_nothing():
    grade = GSM8KTask().grade(item("2"), "The answer is N = 2N - 2.")
    assert grade.detail["extracted_from"] == "last_number" and not grade.explicit


def test_strict_and_flexible_filters_are_recorded_as_lm_eval_names_them():
    both = GSM8KTask().grade(item("18"), "9 * 2 = 18. The answer is 18.")
    strict_only = GSM8KTask().grade(item("18"), "The answer is 18. (Checked with 9 + 9 and 20 - 2 = 19.)")
    flexible_only = GSM8KTask().grade(item("18"), "She makes 9 * 2 = 18")
    assert both.detail["filters"] == {"strict-match": True, "flexible-extract": True}
    assert strict_only.detail["filters"] == {"strict-match": True, "flexible-extract": False} and strict_only.success
    assert flexible_only.detail["filters"] == {"strict-match": False, "flexible-extract": True}
    assert flexible_only.success and not flexible_only.explicit  # a guess: solved only when not cut
