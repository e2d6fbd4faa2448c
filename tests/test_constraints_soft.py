"""LLM-based soft constraints with a scripted generator: parsing, judging, errors and the call cache."""
from __future__ import annotations

import json
import re

import pytest

from sustain.eval.constraints import Constraint, SoftExtractor, kept_constraints
from sustain.eval.constraints.soft import parse_constraint_list, parse_json_reply, parse_verdict
from sustain.eval.errors import UserError
from sustain.eval.generators.base import Generation, Generator, SamplingConfig

QUESTION = "Tom has 23 apples and buys 45 more. How many apples does he have?"
OUTPUT = "<think>add them</think>First add the two amounts: 23 + 45 = 68.\nThe answer is 68."
STEPS = "Show the calculation before stating the result."
TONE = "Write in a plain, neutral tone."
LINES = "Put the final answer on its own last line."
HEADINGS = "Use a markdown heading for each step."


class ScriptedGenerator(Generator):
    """Answers extraction and judge prompts from scripts; a script value that is an exception is raised."""

    model_id = "scripted-llm"

    def __init__(self, extraction, verdicts: dict):
        self.extraction = extraction
        self.verdicts = verdicts
        self.prompts: list[str] = []

    def generate(self, conversations, cfg: SamplingConfig):
        replies = []
        for conv in conversations:
            prompt = conv[-1]["content"]
            self.prompts.append(prompt)
            judged = re.search(r"Instruction:\n<<<\n(.*?)\n>>>", prompt, flags=re.DOTALL)
            reply = self.verdicts.get(judged.group(1)) if judged else self.extraction
            if isinstance(reply, Exception):
                raise reply  # a real backend fails the whole request
            replies.append(reply)
        return [Generation(text=r, finish_reason="stop", n_tokens=len(r.split())) for r in replies]


def _yes(reason="it does"):
    return json.dumps({"satisfied": True, "reason": reason})


def _no(reason="it does not"):
    return json.dumps({"satisfied": False, "reason": reason})


def _listing(*pairs):
    return json.dumps([{"category": c, "constraint": t} for c, t in pairs])


def _by_text(records):
    return {r["constraint"]["text"]: r for r in records if r["constraint"]}


def test_good_answer_keeps_self_evident_constraints_and_records_the_rest(tmp_path):
    gen = ScriptedGenerator(_listing(("method", STEPS), ("style", TONE), ("structure", HEADINGS)),
                            {STEPS: _yes(), TONE: _yes(), HEADINGS: _no("there are no headings")})
    records = SoftExtractor(gen, tmp_path).extract(QUESTION, OUTPUT)
    by_text = _by_text(records)
    assert set(by_text) == {STEPS, TONE, HEADINGS}
    assert by_text[HEADINGS]["self_evident"] is False and by_text[HEADINGS]["reason"] == "there are no headings"
    kept = kept_constraints(records)
    assert {c.text for c in kept} == {STEPS, TONE}
    assert all(c.family == "soft" and c.instruction_id is None for c in kept)
    assert {c.category for c in kept} == {"method", "style"}
    # the LLM sees the visible answer only, not the reasoning trace
    assert all("add them" not in p for p in gen.prompts) and any("23 + 45 = 68" in p for p in gen.prompts)


def test_fenced_json_with_prose_and_trailing_commas_is_parsed(tmp_path):
    fenced = f'Sure! Here they are:\n```json\n[{{"category": "Method", "constraint": "{STEPS}",}},\n]\n```\nHope this helps.'
    judge = 'Let me check.\n```json\n{"satisfied": true, "reason": "shown",}\n```'
    records = SoftExtractor(ScriptedGenerator(fenced, {STEPS: judge}), tmp_path).extract(QUESTION, OUTPUT)
    assert [c.text for c in kept_constraints(records)] == [STEPS]
    assert kept_constraints(records)[0].category == "method"


def test_malformed_json_is_recorded_not_raised(tmp_path):
    records = SoftExtractor(ScriptedGenerator("I cannot think of any constraints, sorry.", {}), tmp_path).extract(QUESTION, OUTPUT)
    assert records == [{"constraint": None, "self_evident": None, "checked_by": "llm", "error": "unparseable",
                        "raw": "I cannot think of any constraints, sorry.", "extractor": "scripted-llm",
                        "judge": "scripted-llm"}]
    # a bad item in a good list, and a judge reply with no verdict
    gen = ScriptedGenerator(json.dumps([{"category": "mood", "constraint": "Be happy."}, {"category": "style", "constraint": TONE}]),
                            {TONE: "Probably fine?"})
    records = SoftExtractor(gen, tmp_path / "b").extract(QUESTION, OUTPUT)
    assert [r.get("error") for r in records] == ["unparseable", "unparseable"]
    assert records[1]["constraint"]["text"] == TONE and records[1]["self_evident"] is None
    assert kept_constraints(records) == []


def test_generator_timeout_is_recorded_per_call(tmp_path):
    gen = ScriptedGenerator(_listing(("method", STEPS), ("structure", LINES)),
                            {STEPS: UserError("request to http://llm:8000 timed out after 60 s", "raise --timeout"), LINES: _yes()})
    extractor = SoftExtractor(gen, tmp_path, sampling=SamplingConfig(batch_size=8))
    records = extractor.extract(QUESTION, OUTPUT)
    by_text = _by_text(records)
    assert by_text[STEPS]["error"] == "timeout" and by_text[STEPS]["self_evident"] is None
    assert "timed out" in by_text[STEPS]["detail"]
    assert by_text[LINES]["self_evident"] is True  # the batch failed, the good call was redone alone
    # the failed call is not cached: a rerun asks again and can succeed (batch size is not in the key)
    gen.verdicts[STEPS] = _yes()
    rerun = SoftExtractor(gen, tmp_path, sampling=SamplingConfig(batch_size=1))
    assert {c.text for c in kept_constraints(rerun.extract(QUESTION, OUTPUT))} == {STEPS, LINES}
    assert rerun.calls == 1


def test_unreachable_endpoint_raises_after_repeated_failures(tmp_path):
    down = UserError("cannot reach http://llm:8000 (connection refused)", "start the server")
    extractor = SoftExtractor(ScriptedGenerator(down, {}), tmp_path, max_consecutive_errors=3)
    first = extractor.extract(QUESTION, OUTPUT)
    assert first[0]["error"] == "generator error"
    extractor.extract("another question", "another answer")
    with pytest.raises(UserError, match="failed 3 calls in a row"):
        extractor.extract("a third question", "a third answer")


def test_cache_makes_a_rerun_free(tmp_path):
    def make():
        return ScriptedGenerator(_listing(("method", STEPS), ("style", TONE)), {STEPS: _yes(), TONE: _no()})

    first_gen = make()
    first = SoftExtractor(first_gen, tmp_path)
    records = first.extract(QUESTION, OUTPUT)
    verdict = first.judge_follow(Constraint.from_dict(records[0]["constraint"]), "Shown: 1 + 1 = 2.")
    assert first.calls == 4 and len(first_gen.prompts) == 4

    second_gen = make()
    second = SoftExtractor(second_gen, tmp_path)
    assert second.extract(QUESTION, OUTPUT) == records
    assert second.judge_follow(Constraint.from_dict(records[0]["constraint"]), "Shown: 1 + 1 = 2.") == verdict
    assert second.calls == 0 and second_gen.prompts == []
    # another model does not reuse the first model's answers
    third_gen = make()
    third_gen.model_id = "another-llm"
    SoftExtractor(third_gen, tmp_path).extract(QUESTION, OUTPUT)
    assert len(third_gen.prompts) == 3


def test_judge_follow_on_constrained_outputs(tmp_path):
    gen = ScriptedGenerator("[]", {STEPS: _yes(), TONE: _no(), LINES: "no idea"})
    extractor = SoftExtractor(gen, tmp_path)
    soft = {t: Constraint(id=f"soft:x:{i}", family="soft", category="style", text=t) for i, t in enumerate((STEPS, TONE, LINES))}
    assert extractor.judge_follow(soft[STEPS], "out") is True
    assert extractor.judge_follow(soft[TONE], "out") is False
    assert extractor.judge_follow(soft[LINES], "out") is None


def test_many_items_share_batched_calls(tmp_path):
    gen = ScriptedGenerator(_listing(("method", STEPS)), {STEPS: _yes()})
    extractor = SoftExtractor(gen, tmp_path, sampling=SamplingConfig(batch_size=16))
    results = extractor.extract_many([(QUESTION, OUTPUT), ("Q2", "A two"), ("Q3", "A three")])
    assert [len(kept_constraints(r)) for r in results] == [1, 1, 1]
    assert extractor.calls == 6


@pytest.mark.parametrize("reply,expected", [
    ('{"satisfied": true}', (True, None)),
    ('[{"satisfied": "no", "reason": "r"}]', (False, "r")),
    ("<think>{\"satisfied\": true}</think>", (None, None)),  # only the trace holds a verdict
    ('{"satisfied": "maybe"}', (None, None)),
])
def test_parse_verdict(reply, expected):
    assert parse_verdict(parse_json_reply(reply)) == expected


def test_parse_constraint_list_shapes():
    one = {"category": "style", "constraint": TONE}
    assert parse_constraint_list(one) == [one]
    assert parse_constraint_list({"constraints": [one]}) == [one]
    assert parse_constraint_list([[one], one]) == [one, one]
    assert parse_constraint_list(None) == []


def test_cache_survives_a_torn_last_line(tmp_path):
    gen = ScriptedGenerator(_listing(("style", TONE)), {TONE: _yes()})
    records = SoftExtractor(gen, tmp_path).extract(QUESTION, OUTPUT)
    cache_file = next(tmp_path.iterdir())
    with cache_file.open("a") as fh:
        fh.write('{"key": "abc", "compl')  # a kill mid-write
    again = SoftExtractor(ScriptedGenerator("unused", {TONE: _no()}), tmp_path)
    assert again.extract(QUESTION, OUTPUT) == records and again.calls == 0
    assert again.judge_follow(Constraint.from_dict(records[0]["constraint"]), "new output") is False  # appended after the cut
    assert all(json.loads(line) for line in cache_file.read_text().splitlines())


# ---------------------------------------------------------------- guards: leaks, empty replies, a separate judge

def test_leak_check_rejects_constraints_that_give_the_answer_away(tmp_path):
    leaks = {"The result is 68.": "gold_number", "Say sixty-eight at the end.": "gold_number_words",
             "Mention Arthur's Magazine first.": "gold_entity"}
    gen = ScriptedGenerator(_listing(("method", STEPS), *(("style", t) for t in leaks)), {STEPS: _yes(), **{t: _no() for t in leaks}})
    extractor = SoftExtractor(gen, tmp_path)
    records = extractor.extract_many([(QUESTION, OUTPUT)], hidden=[{"answer": "68"}])[0]
    by_text = _by_text(records)
    assert by_text["The result is 68."]["rejected"] == "leak" and by_text["The result is 68."]["leak"] == ["gold_number"]
    assert by_text["Say sixty-eight at the end."]["leak"] == ["gold_number_words"]
    assert "Mention Arthur's Magazine first." not in [c.text for c in kept_constraints(records)]
    assert [c.text for c in kept_constraints(records)] == [STEPS]
    assert all("Instruction:\n<<<\nThe result" not in p for p in gen.prompts)  # a leaking constraint is never judged
    named = extractor.extract_many([(QUESTION, OUTPUT)], hidden=[{"answer": "Arthur's Magazine"}])[0]
    assert _by_text(named)["Mention Arthur's Magazine first."]["leak"] == ["gold_answer", "gold_entity"]


def test_leak_check_on_code_identifiers_the_tests_call():
    from sustain.eval.constraints.leak import leak_reasons, leak_terms

    terms = leak_terms({"test_code": "def check(candidate):\n    assert candidate([1]) == sort_third([1])\n",
                        "entry_point": "sort_third"})
    assert terms["code_identifier"] == ["sort_third"]
    assert leak_reasons("Define sort_third with a loop.", terms) == ["code_identifier"]
    assert leak_reasons("Use a loop and return a list.", terms) == []


def test_empty_reply_of_a_thinking_model_is_counted_not_dropped(tmp_path):
    thinking = "<think>" + "let me think " * 30  # the budget ran out inside the thought
    records = SoftExtractor(ScriptedGenerator(thinking, {}), tmp_path).extract(QUESTION, OUTPUT)
    assert [r["error"] for r in records] == ["empty"] and records[0]["raw"].startswith("<think>")
    gen = ScriptedGenerator(_listing(("style", TONE)), {TONE: "<think>hmm</think>"})
    extractor = SoftExtractor(gen, tmp_path / "b")
    assert _by_text(extractor.extract(QUESTION, OUTPUT))[TONE]["error"] == "empty"
    verdict = extractor.judge_follow_detail(Constraint.from_dict(_by_text(extractor.extract(QUESTION, OUTPUT))[TONE]["constraint"]), "x")
    assert verdict == {"satisfied": None, "reason": None, "error": "empty"}


def test_a_separate_judge_model_judges_and_is_named(tmp_path):
    extractor_gen = ScriptedGenerator(_listing(("style", TONE)), {})
    judge_gen = ScriptedGenerator("unused", {TONE: _yes("plain words")})
    judge_gen.model_id = "judge-llm"
    soft = SoftExtractor(extractor_gen, tmp_path, judge=judge_gen, judge_sampling=SamplingConfig(max_new_tokens=64))
    [record] = soft.extract(QUESTION, OUTPUT)
    assert record["self_evident"] is True and record["reason"] == "plain words"
    assert (record["extractor"], record["judge"]) == ("scripted-llm", "judge-llm")
    assert len(extractor_gen.prompts) == 1 and len(judge_gen.prompts) == 1


def test_judge_and_template_settings_reach_the_generators(tmp_path):
    from sustain.eval.config import EvalConfig
    from sustain.eval.pipeline import Pipeline

    url = "http://127.0.0.1:9/v1"  # never called: building the generators sends nothing
    cfg = EvalConfig(model="m", backend="openai", base_url=url, tasks=["arith"], limit=2, families=["soft"],
                     soft_model="extractor", soft_base_url=url, soft_max_new_tokens=2048,
                     soft_chat_template_kwargs={"enable_thinking": "false"}, judge_model="judge",
                     judge_max_new_tokens=64, out=str(tmp_path / "run"))
    soft = Pipeline(cfg).soft
    assert soft.generator.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
    assert soft.judge.extra_body == {} and soft.judge.model == "judge" and "judge" in soft.judge_id
    assert (soft.sampling.max_new_tokens, soft.judge_sampling.max_new_tokens) == (2048, 64)
    default = Pipeline(EvalConfig(**{**cfg.__dict__, "judge_model": None, "out": str(tmp_path / "r2")})).soft
    assert default.judge is default.generator and default.judge_id == default.model_id
