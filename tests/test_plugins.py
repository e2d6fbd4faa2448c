"""Tasks and backends registered from outside the package by "module:Class" (tests/plugins.py): what a
task declares (code answers, sandbox settings, stop strings) drives the pipeline, never its name."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError
from sustain.eval.failures import CODE_CLASSES, classify
from sustain.eval.pipeline import run_eval
from sustain.eval.records import RecordStore
from sustain.eval.tasks import get_task, open_task, task_class

import plugins

TESTS = Path(__file__).resolve().parent
CODE_TASK = "plugins:ExpressionTask"


@pytest.mark.parametrize("spec, problem", [
    ("no_such_module:Task", "no module named 'no_such_module'"),
    ("plugins:Missing", "module 'plugins' has no 'Missing'"),
    ("plugins:NotATask", "is not a Task subclass"),
    ("gsm9k", "unknown task 'gsm9k'"),
])
def test_a_bad_task_spec_is_a_one_line_user_error(spec, problem):
    with pytest.raises(UserError) as info:
        task_class(spec)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_a_code_task_gets_the_sandbox_settings_and_others_do_not():
    cfg = EvalConfig(tasks=[CODE_TASK, "plugins:StoppingTask"], sandbox_workers=3)
    task = open_task(CODE_TASK, cfg)
    assert task.sandbox_workers == 3 and task.sandbox == cfg.sandbox
    assert isinstance(open_task("plugins:StoppingTask", cfg), plugins.StoppingTask)  # takes no sandbox options
    assert type(get_task(CODE_TASK)) is plugins.ExpressionTask


def test_a_plugin_backend_gets_only_the_settings_it_takes_and_the_tasks_stop_strings(tmp_path):
    plugins.FixedGenerator.calls.clear()
    cfg = EvalConfig(model="m", backend="plugins:FixedGenerator", tasks=["plugins:StoppingTask"],
                     base_url="http://unused", out=str(tmp_path / "run"))
    summary = run_eval(cfg)
    assert summary["accuracy"]["value"] == 1.0
    assert plugins.FixedGenerator.calls and all(c.stop == ["\n\nQuestion:"] for c in plugins.FixedGenerator.calls)


@pytest.fixture(scope="module")
def code_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("plugin") / "eval"
    cfg = EvalConfig(model=str(tiny_model), tasks=[CODE_TASK], limit=24, out=str(out), k_max=2, max_new_tokens=48,
                     batch_size=24, sandbox_workers=2)
    return out, run_eval(cfg)


def test_a_plugin_code_task_runs_through_the_whole_pipeline(code_run):
    out, summary = code_run
    base = list(RecordStore(out / "baseline.jsonl"))
    assert len(base) == 24 and all(r["task"] == CODE_TASK and r["answer_kind"] == "code" for r in base)
    assert summary["accuracy"]["value"] >= 0.5  # the tiny model's "a + b = c" work runs as code
    constrained = list(RecordStore(out / "constrained.jsonl"))
    k1 = [r for r in constrained if r["k"] == 1 and r["family"] == "hard"]
    assert k1 and summary["sustain"]["headline"][CODE_TASK]["hard"]["n"] == len(k1)


def test_its_failures_are_code_failures_not_reasoning_errors(code_run):
    out, summary = code_run
    failed = [r for r in RecordStore(out / "constrained.jsonl") if not r["success"]]
    assert failed, "the tiny model should break some programs under constraints"
    truncated = sum(r["finish_reason"] == "length" for r in failed)
    assert sum(summary["failures"][c] for c in CODE_CLASSES) == len(failed) - truncated
    assert summary["failures"]["reasoning"] == summary["failures"]["output_spec"] == summary["failures"]["no_answer"] == 0
    # without the declaration the same records would be filed as answer-format or reasoning errors
    undeclared = [classify({k: v for k, v in r.items() if k != "answer_kind"}) for r in failed]
    assert any(c not in CODE_CLASSES for c in undeclared)


def test_the_command_line_takes_a_plugin_task(tiny_model, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-m", "sustain", "eval", "--model", str(tiny_model), "--tasks", CODE_TASK,
                           "--limit", "2", "--max-new-tokens", "16", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {r["task"] for r in RecordStore(tmp_path / "run" / "baseline.jsonl")} == {CODE_TASK}
