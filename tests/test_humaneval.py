"""HumanEval: loading, prompts, code extraction from real-looking outputs, grading in the sandbox."""
import gzip
import json
import re
import textwrap

import pytest

from sustain.eval.errors import UserError
from sustain.eval.tasks import get_task
from sustain.eval.tasks.humaneval import HumanEvalTask, extract_code
from tests.conftest import need_command


@pytest.fixture(scope="module")
def task():
    need_command("bwrap", "bubblewrap")
    task = get_task("humaneval", timeout_s=10, sandbox_workers=2)
    yield task
    task.close()


@pytest.fixture(scope="module")
def items(task):
    return task.load()


def by_id(items, task_id):
    return next(it for it in items if it.id == task_id)


def signature_and_body(item):
    """The function from its `def` line on, plus the canonical body (what a model 'repeats')."""
    prompt = item.meta["prompt"]
    return prompt[prompt.index(f"def {item.meta['entry_point']}("):] + item.meta["canonical_solution"]


def test_bundled_problems_load(items):
    assert len(items) == 164
    assert items[0].id == "HumanEval/0" and items[-1].id == "HumanEval/163"
    first = items[0]
    assert first.meta["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in first.gold
    assert first.meta["prompt"].strip() in first.prompt  # the model sees the code to complete
    assert get_task("humaneval").load(limit=3) == items[:3]


def test_chat_messages_carry_the_constraint(items):
    messages = get_task("humaneval").messages(items[0], constraint="Use at most 5 lines.")
    assert messages[-1]["role"] == "user"
    assert messages[-1]["content"].endswith("Use at most 5 lines.")
    assert "def has_close_elements" in messages[-1]["content"]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_local_files_load(tmp_path, suffix):
    row = {"task_id": "Local/0", "prompt": "def inc(x):\n    \"\"\"x + 1\"\"\"\n", "test": "def check(c):\n    assert c(1) == 2\n",
           "entry_point": "inc", "canonical_solution": "    return x + 1\n"}
    path = tmp_path / f"problems{suffix}"
    data = (json.dumps(row) + "\n").encode()
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    [item] = HumanEvalTask(data=str(path)).load()
    assert item.id == "Local/0" and item.meta["entry_point"] == "inc"


def test_bad_local_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        HumanEvalTask(data=str(tmp_path / "missing.jsonl")).load()
    lacking = tmp_path / "lacking.jsonl"
    lacking.write_text(json.dumps({"task_id": "x", "prompt": "def f(): pass"}) + "\n")
    with pytest.raises(UserError, match="lacks field"):
        HumanEvalTask(data=str(lacking)).load()
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text("{}\n")
    with pytest.raises(UserError, match="cannot read"):
        HumanEvalTask(data=str(not_gzip)).load()
    with pytest.raises(UserError, match="only a 'test' split"):
        HumanEvalTask().load(split="train")


def test_every_canonical_solution_passes_and_every_stub_fails(task, items):
    canonical = [f"```python\n{it.meta['prompt']}{it.meta['canonical_solution']}```" for it in items]
    stubs = [f"```python\n{it.meta['prompt']}    return None\n```" for it in items]
    grades = task.grade_many(items + items, canonical + stubs)
    solved, stubbed = grades[:164], grades[164:]
    assert [g.detail["reason"] for g in solved if not g.success] == []
    assert all(g.success and g.score == 1.0 for g in solved)
    assert [it.id for it, g in zip(items, stubbed) if g.success] == []
    assert all(g.detail["reason"].startswith("failed: ") for g in stubbed)


@pytest.mark.parametrize("style", [
    "fenced whole function after prose",
    "bare body",
    "body after a think trace",
    "unfenced function between prose",
    "fenced body without a language",
    "several blocks, the last defines it",
])
def test_output_styles_are_extracted_and_pass(task, items, style):
    item = by_id(items, "HumanEval/2")  # truncate_number
    body = item.meta["canonical_solution"]
    function = signature_and_body(item)
    output = {
        "fenced whole function after prose": f"Sure! Here is the solution.\n\n```python\n{function}```\nIt keeps the fraction.",
        "bare body": body,
        "body after a think trace": f"<think>The decimal part is x % 1.</think>\n{textwrap.dedent(body)}",
        "unfenced function between prose": f"Here is my answer:\n{function}\nThis returns the decimal part.",
        "fenced body without a language": f"Complete body:\n```\n{body}```",
        "several blocks, the last defines it": f"Usage:\n```python\nprint(truncate_number(3.5))\n```\nCode:\n```python\n{function}```",
    }[style]
    grade = task.grade(item, output)
    assert (grade.success, grade.detail["reason"]) == (True, "passed"), grade.detail
    assert grade.answer and "return number % 1.0" in grade.answer


def test_helpers_from_the_prompt_stay_available(task, items):
    # HumanEval/32's tests call poly() from the prompt; the model only writes find_zero
    item = by_id(items, "HumanEval/32")
    assert task.grade(item, f"```python\n{signature_and_body(item)}```").success


def test_failure_reasons_separate_syntax_from_runtime(task, items):
    item = by_id(items, "HumanEval/2")
    outputs = {
        "syntax error": "```python\ndef truncate_number(number: float) -> float:\n    return number %% 1.0 +\n```",
        "failed: AssertionError": "```python\ndef truncate_number(number: float) -> float:\n    return number\n```",
        "failed: ZeroDivisionError": "```python\ndef truncate_number(number: float) -> float:\n    return 1 / 0\n```",
        "no code": "I am not able to help with that.",
    }
    grades = task.grade_many([item] * len(outputs), list(outputs.values()))
    assert [g.detail["reason"] for g in grades] == list(outputs)
    assert not any(g.success for g in grades)
    assert grades[-1].answer is None


def test_a_faked_exit_is_not_a_pass(task, items):
    item = by_id(items, "HumanEval/2")
    faked = "```python\nimport os\nprint('all tests passed')\nos._exit(0)\n```"
    grade = task.grade(item, faked)
    assert not grade.success and grade.detail["reason"] == "exited early"


def test_extraction_reports_kind():
    prompt = "def f(x):\n    \"\"\"double\"\"\"\n"
    assert extract_code("```python\ndef f(x):\n    return 2 * x\n```", prompt, "f").kind == "function"
    assert extract_code("    return 2 * x", prompt, "f").kind == "body"
    assert extract_code("", prompt, "f") is None
    assert extract_code("Sorry, I cannot do that.", prompt, "f") is None  # prose is no code...
    assert extract_code("def f(x):\n    return 2 *", prompt, "f").kind == "function"  # ...broken code is code
    assert re.search(r"return 2 \* x", extract_code("<think>x</think>return 2 * x", prompt, "f").code)
