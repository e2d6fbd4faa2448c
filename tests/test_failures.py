from sustain.eval.failures import classify, gold_in_output, has_meta_commentary


def rec(**kw):
    base = {"task": "gsm8k", "item_id": "1", "condition": "hard:k1", "success": False, "finish_reason": "stop",
            "gold": "68", "answer": None, "output": "", "detail": {}}
    base.update(kw)
    return base


def test_truncation_first():
    assert classify(rec(finish_reason="length", answer="3", output="23 + 45 = 6")) == "truncated"


def test_reasoning_error_when_answer_wrong_and_gold_absent():
    assert classify(rec(answer="67", output="23 + 45 = 67. The answer is 67.")) == "reasoning"


def test_output_spec_when_work_reaches_gold_but_answer_lost():
    assert classify(rec(answer=None, output="23 + 45 = 68 apples")) == "output_spec"
    assert classify(rec(answer="2", output="23 + 45 = 68, in 2 steps")) == "output_spec"


def test_no_answer():
    assert classify(rec(answer=None, output="i cannot")) == "no_answer"


def test_code_classes():
    assert classify(rec(task="humaneval", gold=None, detail={"reason": "syntax error"})) == "code_syntax"
    assert classify(rec(task="humaneval", gold=None, detail={"reason": "failed: AssertionError"})) == "code_runtime"


def test_code_classes_follow_the_declared_answer_kind_not_the_task_name():
    code = dict(gold="68", answer="23 + 45", output="23 + 45 = 68", detail={"reason": "failed: AssertionError"})
    assert classify(rec(task="mypkg.tasks:MyCodeTask", answer_kind="code", **code)) == "code_runtime"
    assert classify(rec(task="mypkg.tasks:MyCodeTask", answer_kind="number", **code)) == "output_spec"


def test_gold_matching_numbers_and_text():
    assert gold_in_output("1234", "it costs $1,234 in total")
    assert not gold_in_output("1234", "it costs 12345")
    assert gold_in_output("Arthur's Magazine", "the answer: arthur's magazine.")
    assert not gold_in_output(None, "anything")


def test_meta_commentary():
    assert has_meta_commentary("As requested, I will keep it under 20 words: 68")
    assert not has_meta_commentary("23 + 45 = 68. The answer is 68.")
