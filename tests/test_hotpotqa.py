import json

import pytest
from conftest import need_data

from sustain.eval.errors import UserError
from sustain.eval.tasks.base import Item, read_jsonl
from sustain.eval.tasks.hotpotqa import HotpotQATask, from_hub_row, normalize_answer, render_prompt, token_f1

DEV = "hotpotqa/dev_distractor_first103.jsonl"


@pytest.fixture(scope="module")
def dev():
    task = HotpotQATask(data=str(need_data(DEV)))
    return task, task.load()


def item(gold: str) -> Item:
    return Item(id="x", prompt="q", gold=gold)


def test_all_gold_answers_score_exact_match(dev):
    task, items = dev
    assert len(items) == 103
    for it in items:
        grade = task.grade(it, f"<think>Let me look at both paragraphs.</think>Both paragraphs agree.\nAnswer: {it.gold}")
        assert (grade.success, grade.detail["em"], grade.score) == (True, 1.0, 1.0), it.id
        assert grade.answer == it.gold.rstrip("."), it.id  # a closing period is dropped from the span


def test_wrong_answers_score_zero(dev):
    task, items = dev
    for it in items:
        grade = task.grade(it, "Answer: zzyzx qwertyuiop")
        assert (grade.success, grade.score, grade.detail["em"]) == (False, 0.0, 0.0), it.id


def test_prompt_holds_every_titled_paragraph_and_the_question(dev):
    _, items = dev
    first = read_jsonl(need_data(DEV))[0]
    prompt = items[0].prompt
    assert items[0].id == first["_id"] and items[0].meta["type"] == first["type"]
    for title, sentences in first["context"]:
        assert f"Title: {title}\n{''.join(sentences).strip()}" in prompt
    assert f"Question: {first['question']}" in prompt and prompt.rstrip().endswith("yes/no).")


def test_hub_rows_give_the_same_items_as_the_official_json():
    row = read_jsonl(need_data(DEV))[3]
    hub_row = {
        "id": row["_id"],
        "question": row["question"],
        "answer": row["answer"],
        "type": row["type"],
        "level": row["level"],
        "supporting_facts": {"title": [t for t, _ in row["supporting_facts"]], "sent_id": [i for _, i in row["supporting_facts"]]},
        "context": {"title": [t for t, _ in row["context"]], "sentences": [s for _, s in row["context"]]},
    }
    converted = from_hub_row(hub_row)
    assert render_prompt(converted) == render_prompt(row)
    assert converted["supporting_facts"] == row["supporting_facts"] and converted["_id"] == row["_id"]


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("The Beatles", "beatles"),
        ("An Apple a day", "apple day"),
        ("Washington, D.C.", "washington dc"),
        ("  NEW   York\tCity! ", "new york city"),
        ("theatre", "theatre"),  # articles only as whole words
        ("3,677 seated", "3677 seated"),
    ],
)
def test_normalisation(raw, normalised):
    assert normalize_answer(raw) == normalised


@pytest.mark.parametrize(
    "prediction, gold, f1",
    [
        ("Barack Obama", "Barack Hussein Obama", 0.8),  # P 1, R 2/3
        ("the city of Paris", "Paris", 0.5),  # P 1/3, R 1
        ("Paris France", "Lyon France", 0.5),
        ("yes", "yes", 1.0),
        ("yes", "yes indeed", 0.0),  # yes/no only get credit on an exact match
        ("no answer", "noanswer", 0.0),
        ("London", "Paris", 0.0),
    ],
)
def test_token_f1_partial_credit(prediction, gold, f1):
    assert token_f1(prediction, gold) == pytest.approx(f1)


def test_partial_answer_fails_exact_match_but_passes_an_f1_threshold():
    output = "Answer: Barack Obama"
    strict = HotpotQATask().grade(item("Barack Hussein Obama"), output)
    lenient = HotpotQATask(f1_threshold=0.75).grade(item("Barack Hussein Obama"), output)
    assert (strict.success, strict.score, strict.detail["em"]) == (False, pytest.approx(0.8), 0.0)
    assert lenient.success and lenient.detail["f1"] == pytest.approx(0.8)
    assert not HotpotQATask(f1_threshold=0.9).grade(item("Barack Hussein Obama"), output).success


@pytest.mark.parametrize(
    "output, answer, source",
    [
        ("Scott is American, Ed Wood is American.\nAnswer: yes", "yes", "answer_line"),
        ("So the answer is Chief of Protocol.", "Chief of Protocol", "answer_is"),
        ("**Answer:** \"Animorphs\"", "Animorphs", "answer_line"),
        ("Answer: no\nWait, let me re-check.\nFinal answer: yes", "yes", "answer_line"),
        ("Answer: Animorphs\nThis answer is based on the second paragraph.", "Animorphs", "answer_line"),
        ("Both are American.\n\nyes", "yes", "last_line"),
        ("<think>Answer: no</think>\nAnswer: yes", "yes", "answer_line"),
        ("Answer:\nThe answer is yes.", "yes", "answer_is"),
    ],
)
def test_answer_extraction(output, answer, source):
    grade = HotpotQATask().grade(item("yes" if answer == "yes" else answer), output)
    assert (grade.answer, grade.detail["extracted_from"], grade.success) == (answer, source, True)


@pytest.mark.parametrize("output", ["", "   \n ", "<think>Answer: yes, but I ran out of tokens"])
def test_no_answer_is_recorded_as_none(output):
    grade = HotpotQATask().grade(item("yes"), output)
    assert (grade.success, grade.answer, grade.score, grade.detail["extracted_from"]) == (False, None, 0.0, None)


def test_test_split_means_the_dev_split_in_a_folder(tmp_path):
    row = read_jsonl(need_data(DEV))[0]
    (tmp_path / "validation.jsonl").write_text(json.dumps(row) + "\n")
    items = HotpotQATask(data=str(tmp_path)).load("test")
    assert [it.id for it in items] == [row["_id"]]


def test_limit_keeps_the_first_items(dev):
    _, items = dev
    assert HotpotQATask(data=str(need_data(DEV))).load(limit=5) == items[:5]


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data file not found"):
        HotpotQATask(data=str(tmp_path / "nope.jsonl")).load()


def test_line_without_context_is_a_user_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"_id": "a", "question": "q?", "answer": "x"}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1 lacks field\(s\) context"):
        HotpotQATask(data=str(path)).load()


@pytest.mark.parametrize("threshold", [0, -0.5, 1.5])
def test_bad_f1_threshold_is_a_user_error(threshold):
    with pytest.raises(UserError, match="f1_threshold must be in"):
        HotpotQATask(f1_threshold=threshold)


def qa_item(gold: str, question: str) -> Item:
    return Item(id="x", prompt=question, gold=gold, meta={"question": question})


@pytest.mark.parametrize(
    "question, output, answer, source",
    [
        # the forms SmolLM2-135M-Instruct wrote (tests/fixtures/real_outputs)
        ("Which series?", 'The answer to this question is: "Animorphs"\n\nAnimorphs is a science fantasy series.', "Animorphs", "answer_is"),
        ("Which city?", 'The answer to the question is: "New York City"', "New York City", "answer_is"),
        ("Which city?", 'The answer is: "New York City".', "New York City", "answer_is"),
        ("Which label?", 'The answer to the question is: "S.M. Entertainment"', "S.M. Entertainment", "answer_is"),
        ("Who?", "Answer: Kaiser. He founded the company in 1939.", "Kaiser", "answer_line"),
        ("Who?", "Answer: Henry J. Kaiser, because he founded it.", "Henry J. Kaiser", "answer_line"),
        ("Who?", 'The answer to the question is: "The answer is: Edward Kaiser Jr.', "Edward Kaiser Jr", "answer_is"),
        ("Who?", "The answer is:\nHenry J. Kaiser", "Henry J. Kaiser", "answer_is"),
        ("Who?", "Some thought first.\n<answer>Henry J. Kaiser</answer>", "Henry J. Kaiser", "answer_tag"),
        ("Were they both American?", "No, the answer to the question is not \"Answer: X\".", "no", "leading_yes_no"),
        ("Were they both American?", "Yes. Both were born in the United States.", "yes", "leading_yes_no"),
        ("Were they both American?", "No, the answer is yes.", "yes", "answer_is"),  # a marked yes/no wins
        ("The university was founded in what year?", "The university was founded in 1838.", "1838", "restated"),
        ("The team played during what timeframe?", "The team played during the 1992–93 season.", "the 1992–93 season", "restated"),
    ],
)
def test_answer_forms_real_models_write(question, output, answer, source):
    grade = HotpotQATask().grade(qa_item(answer, question), output)
    assert (grade.answer, grade.detail["extracted_from"], grade.success) == (answer, source, True)
    assert grade.explicit == (source != "restated")


@pytest.mark.parametrize(
    "output",
    [
        'The answer to the question is: "Answer: X"',  # the instruction's placeholder copied
        "The answer to the question is: Question:",
        "The answer to the question is:\n\nThe answer to the question is:",
        "The Scotch Collie is a landrace breed of dog, and the answer is:",
    ],
)
def test_placeholders_and_empty_markers_are_no_answer(output):
    grade = HotpotQATask().grade(qa_item("Scotch Collie", "Which dog?"), output)
    assert (grade.success, grade.answer) == (False, None)


def test_a_restatement_that_does_not_fill_the_blank_is_only_the_last_line_guess():
    question = "Who wrote the film starring Nicolas Cage?"
    grade = HotpotQATask().grade(qa_item("David Weissman", question), "The Family Man is a 2000 film starring Nicolas Cage.")
    assert grade.detail["extracted_from"] == "last_line" and not grade.explicit and not grade.success


def test_f1_threshold_reaches_the_grader_from_the_config_and_the_cli(tmp_path):
    from sustain.eval.cli import build_parser, eval_config
    from sustain.eval.pipeline import Pipeline

    data = need_data(DEV)
    args = build_parser().parse_args(["eval", "--model", "m", "--tasks", "hotpotqa", "--data", f"hotpotqa={data}",
                                      "--limit", "1", "--f1-threshold", "0.5", "--out", str(tmp_path / "run")])
    cfg = eval_config(args)
    assert cfg.f1_threshold == 0.5 and "f1_threshold" in cfg.identity()
    assert Pipeline(cfg).tasks["hotpotqa"].f1_threshold == 0.5
    with pytest.raises(UserError, match="f1_threshold must be in"):
        Pipeline(type(cfg)(**{**cfg.__dict__, "f1_threshold": 1.5, "out": str(tmp_path / "other")}))
