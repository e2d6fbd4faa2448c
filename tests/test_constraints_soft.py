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
                        "raw": "I cannot think of any constraints, sorry."}]
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
