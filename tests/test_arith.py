"""The built-in arith task: determinism, disjoint splits, grading, instruction augmentation."""
import random

import pytest

from sustain.eval.errors import UserError
from sustain.eval.tasks import get_task
from sustain.eval.tasks.arith import INSTRUCTIONS, ArithTask, add_instruction


def problem(item):
    return (item.meta["op"], item.meta["a"], item.meta["b"])


def test_registered_and_deterministic():
    task = get_task("arith")
    assert isinstance(task, ArithTask)
    first, again = task.load("test"), ArithTask().load("test")
    assert first == again
    assert [it.id for it in first] == [it.id for it in again]
    assert len({it.id for it in first}) == len(first) == 500
    assert task.load("test", limit=50) == first[:50]  # a limit keeps a prefix
    assert ArithTask(seed=1).load("test") != first


def test_test_problems_are_distinct_and_never_in_training_data():
    task = ArithTask()
    test_problems = [problem(it) for it in task.load("test")]
    assert len(set(test_problems)) == len(test_problems)
    train_items = {problem(it) for it in task.load("train", limit=3000)}
    assert not train_items & set(test_problems)
    rows = task.train_rows(5000, seed=7)
    row_problems = {(r["completion"][0]["content"].split(" = ")[0]) for r in rows}
    test_sums = {f"{a} {op} {b}" for op, a, b in test_problems}
    assert not row_problems & test_sums
    # the partition comes from the task seed, not from the sampling seed
    assert all(task.split_of(*p) == "test" for p in test_problems)


def test_items_carry_a_worked_solution_that_grades_correct():
    task = ArithTask(ops="+-*", digits=2, test_size=60)
    for it in task.load("test"):
        op, a, b = problem(it)
        assert it.gold == {"+": a + b, "-": a - b, "*": a * b}[op] >= 0
        assert it.meta["solution"] == f"{a} {op} {b} = {it.gold}. The answer is {it.gold}."
        assert str(a) in it.prompt and str(b) in it.prompt
        assert task.grade(it, it.meta["solution"]).success


def test_grading_tells_no_answer_from_wrong_answer():
    task = ArithTask()
    item = task.load("test", limit=1)[0]
    gold = item.gold
    ok = task.grade(item, f"<think>maybe {gold + 1}</think>The answer is {gold}.")
    assert ok.success and ok.answer == str(gold) and ok.score == 1.0
    wrong = task.grade(item, f"{gold} is close. The answer is {gold + 1}.")
    assert not wrong.success and wrong.answer == str(gold + 1) and wrong.detail["reason"] == "wrong answer"
    none = task.grade(item, "I cannot say.")
    assert not none.success and none.answer is None and none.detail["reason"] == "no answer"
    last = task.grade(item, f"so we get {gold}")
    assert last.success and last.detail["extracted_by"] == "last number"
    big = task.grade(type(item)(id="x", prompt="", gold=1234), "the answer is 1,234.")
    assert big.success and big.answer == "1234"
    assert not task.grade(type(item)(id="x", prompt="", gold=12), "The answer is 12.5").success


@pytest.mark.parametrize("inst_id", sorted(INSTRUCTIONS))
def test_every_instruction_is_self_evident_for_worked_solutions(inst_id):
    rng = random.Random(0)
    for it in ArithTask(ops="+-*").load("test", limit=40):
        prompt, solution, used = add_instruction(it.prompt, it.meta["solution"], rng, [inst_id])
        text = prompt[len(it.prompt):].strip()
        assert used == inst_id and prompt.startswith(it.prompt + "\n\n")
        assert INSTRUCTIONS[inst_id].check(solution, text), (text, solution)
        assert ArithTask().grade(it, solution).success  # the (maybe lowercased) target still grades


def test_instruction_checks_can_fail():
    violations = {
        "punctuation:no_comma": ("Do not use any commas in your response.", "1, 2, 3"),
        "change_case:lowercase": ("Your entire response should be in lowercase letters.", "The answer is 3."),
        "length_constraints:max_words": ("Answer with at most 3 words.", "one two three four"),
        "keywords:forbidden_words": ("Do not include the word 'total' in your response.", "The total is 3."),
    }
    for inst_id, (text, response) in violations.items():
        assert not INSTRUCTIONS[inst_id].check(response, text)


def test_train_rows_formats_and_instruction_rate():
    task = ArithTask()
    plain = task.train_rows(300, seed=1)
    assert all(r["instruction_id"] == "" for r in plain)
    assert task.train_rows(300, seed=1) == plain and task.train_rows(300, seed=2) != plain
    row = plain[0]
    assert row["prompt"][0]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    assert row["completion"][0]["content"].endswith(f"The answer is {row['answer']}.")

    pool = ["punctuation:no_comma", "change_case:lowercase"]
    mixed = task.train_rows(2000, seed=1, instruction_rate=0.3, instruction_ids=pool)
    with_inst = [r for r in mixed if r["instruction_id"]]
    assert 0.25 < len(with_inst) / len(mixed) < 0.35
    assert {r["instruction_id"] for r in with_inst} == set(pool)
    for r in with_inst:
        if r["instruction_id"] == "change_case:lowercase":
            assert r["completion"][0]["content"].startswith(r["completion"][0]["content"].lower()[:3])
            assert "the answer is" in r["completion"][0]["content"]

    messages = task.train_rows(3, format="messages")
    assert [m["role"] for m in messages[0]["messages"]] == ["user", "assistant"]
    text = task.train_rows(3, format="text")
    assert isinstance(text[0]["prompt"], str) and isinstance(text[0]["completion"], str)


@pytest.mark.parametrize(
    "kwargs",
    [{"ops": "/"}, {"digits": 0}, {"test_fraction": 1.5}],
)
def test_bad_options_are_user_errors(kwargs):
    with pytest.raises(UserError):
        ArithTask(**kwargs)


def test_bad_row_options_and_exhausted_splits_are_user_errors():
    task = ArithTask()
    with pytest.raises(UserError, match="instruction"):
        task.train_rows(5, instruction_rate=0.5, instruction_ids=["nope"])
    with pytest.raises(UserError, match="format"):
        task.train_rows(5, format="csv")
    with pytest.raises(UserError, match="split"):
        task.load("validation")
    with pytest.raises(UserError, match="distinct"):
        ArithTask(digits=1, test_size=1000).load("test")  # 1-digit addition has only 81 problems
    with pytest.raises(UserError, match="only about 100 distinct"):  # refused before sampling
        ArithTask(digits=1, test_fraction=1e-9).load("test")
    with pytest.raises(UserError, match="no test problems"):
        ArithTask(digits=1, test_fraction=1e-9).load("test", limit=5)
