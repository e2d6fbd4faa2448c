"""`sustain audit` on a run folder holding every kind of soft record: kept, not self-evident, rejected by
the leak check, unparseable, empty (a thinking model out of budget) and timed out; a scripted
OpenAI-compatible server plays both the evaluated model and the soft-constraint LLM."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sustain.eval.audit import export_audit
from sustain.eval.config import EvalConfig
from sustain.eval.pipeline import run_eval
from scripted_llm import ScriptedLLM

ROOT = Path(__file__).resolve().parents[1]
KEPT = "Use short plain sentences."
NOT_SELF_EVIDENT = "Use a markdown heading for each step."
LEAKY = "Make sure the final result is seven."
BAD_VERDICT = "Put the result in the last sentence."


class EveryKindLLM(ScriptedLLM):
    """Model answers for 'What is A plus B?'; per item a different extraction reply."""

    def answer(self, prompt: str) -> str | None:
        with self.lock:
            self.requests += 1
        if prompt.startswith("Decide whether the response follows"):
            constraint = re.search(r"Instruction:\n<<<\n(.*?)\n>>>", prompt, flags=re.DOTALL).group(1)
            if constraint == BAD_VERDICT:
                return "I think so."  # no JSON verdict
            return json.dumps({"satisfied": constraint != NOT_SELF_EVIDENT, "reason": f"checked: {constraint[:20]}"})
        if prompt.startswith("You will see a task"):
            if "What is 1 plus 1" in prompt:
                return "Sure! Be clear."  # unparseable
            if "What is 2 plus 2" in prompt:
                return None  # times out
            if "What is 3 plus 3" in prompt:
                return "<think>" + "hmm " * 50  # a thought cut at the budget: empty once traces are stripped
            return json.dumps([{"category": "style", "constraint": KEPT},
                               {"category": "structure", "constraint": NOT_SELF_EVIDENT},
                               {"category": "method", "constraint": LEAKY},
                               {"category": "structure", "constraint": BAD_VERDICT}])
        a, b = map(int, re.search(r"What is (\d+) plus (\d+)", prompt).groups())
        return f"We add {a} and {b}.\nThe answer is {a + b}."


@pytest.fixture(scope="module")
def every_kind_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    data = root / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} plus {b}?", "answer": f"#### {a + b}"}) + "\n"
                            for a, b in ((1, 1), (2, 2), (3, 3), (3, 4))))
    llm = EveryKindLLM(slow_s=2.0)
    try:
        cfg = EvalConfig(model="scripted-model", backend="openai", base_url=llm.url, tasks=["gsm8k"],
                         data={"gsm8k": str(data)}, families=["soft"], soft_model="scripted-judge",
                         soft_base_url=llm.url, request_timeout_s=0.5, request_retries=0, out=str(root / "run"))
        summary = run_eval(cfg)
    finally:
        llm.close()
    return root / "run", summary


def test_summary_counts_every_soft_record(every_kind_run):
    _, summary = every_kind_run
    soft = summary["soft_constraints"]
    assert soft["extractor"] == soft["judge"] == ["openai:scripted-judge@" + soft["extractor"][0].split("@")[1]]
    assert soft["kept"] == 1 and soft["not_self_evident"] == 1
    assert soft["rejected"] == {"gold_number_words": 1} and soft["leak_reasons"] == {"gold_number_words": 1}
    assert soft["extraction_errors"] == {"empty": 1, "timeout": 1, "unparseable": 1}
    assert soft["judge_errors"] == {"unparseable": 1}
    assert soft["follow_judged"] == 1 and soft["follow_no_verdict"] == {}


def test_audit_shows_every_kind_with_verdicts_and_outputs(every_kind_run):
    run, _ = every_kind_run
    path = export_audit(run, n=100, fmt="csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    states = sorted(r["state"] for r in rows)
    assert states == sorted(["kept", "not_self_evident", "rejected:gold_number_words", "judge_error:unparseable",
                             "extraction_error:unparseable", "extraction_error:timeout", "extraction_error:empty"])
    kept = next(r for r in rows if r["state"] == "kept")
    assert kept["constraint_text"] == KEPT and kept["judge_reason"].startswith("checked:")
    assert "The answer is 7." in kept["original_output"] and "The answer is 7." in kept["constrained_output"]
    assert kept["constrained_success"] == "True" and kept["constrained_followed"] == "True"
    assert kept["follow_reason"].startswith("checked:")
    empty = next(r for r in rows if r["state"] == "extraction_error:empty")
    assert empty["raw_reply"].startswith("<think>")
    page = path.with_suffix(".html").read_text(encoding="utf-8")
    assert KEPT in page and "extraction_error:timeout" in page and "&lt;think&gt;" in page


def test_sustain_audit_command_writes_jsonl_and_html(every_kind_run):
    run, _ = every_kind_run
    done = subprocess.run([sys.executable, "-m", "sustain", "audit", str(run), "--n", "3", "--format", "jsonl"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = (run / "audit_n3_seed0.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and (run / "audit_n3_seed0.html").is_file()
    assert "audit_n3_seed0.html" in done.stdout


def test_the_report_names_the_extractor_and_the_judge(every_kind_run, tmp_path):
    from sustain.eval.report.build import build_report

    run, summary = every_kind_run
    md = build_report([run], tmp_path / "report").read_text()
    extractor = summary["soft_constraints"]["extractor"][0]
    assert f"Soft constraints extracted by {extractor}, judged by {extractor}." in md


def test_a_run_with_nothing_solved_gives_an_empty_audit(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "baseline.jsonl").write_text(json.dumps({"task": "gsm8k", "item_id": "0", "condition": "base",
                                                    "success": False, "output": "no"}) + "\n")
    path = export_audit(run, n=5)
    assert path.read_text().splitlines()[1:] == [] and "0 of 0" in path.with_suffix(".html").read_text()
