"""Bad inputs to the CLIs, recipes and data: one line on stderr naming the problem and its fix, no traceback,
a non-zero exit, and nothing already computed lost.

Most cases call the entry points' main() in this process (a Python start with torch costs seconds
here); a few run the real `sustain` / `sustain train sft` processes to prove the same
holds end to end.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sustain.eval.cli import main as sustain
from sustain.eval.records import RecordStore
from sustain.eval.tasks.arith import ArithTask
from scripted_llm import ScriptedLLM
from test_secrets import ArithServer
from tests.conftest import ROOT

GSM8K_ROW = json.dumps({"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"})


def visible_lines(text: str) -> list[str]:
    """What a terminal shows of stderr: a progress bar redraws its line with \\r and clears it when done."""
    shown = []
    for line in text.split("\n"):
        screen = ""
        for part in line.split("\r"):
            screen = part + screen[len(part):]
        if screen.strip():
            shown.append(screen.strip())
    return shown


def assert_one_line_error(stderr: str, *needles: str) -> str:
    lines = visible_lines(stderr)
    assert len(lines) == 1, lines
    assert "Traceback" not in stderr
    assert "(fix: " in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert len(lines[0]) < 600, lines[0]  # a huge input is never echoed whole
    return lines[0]


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture(scope="module")
def bad(tiny_model, tmp_path_factory) -> Path:
    """Broken files and model folders, made once."""
    d = tmp_path_factory.mktemp("bad")
    write(d / "list.yaml", "- model\n- tasks\n")
    write(d / "cut.yaml", 'model: "tiny\ntasks: [arith')
    write(d / "latin1.yaml", "model: caf\xe9\n".encode("latin-1"))
    write(d / "unknown_key.yaml", f"model: {tiny_model}\nmodle: x\n")
    write(d / "wrong_type.yaml", f"model: {tiny_model}\nlimit: [1, 2]\n")
    write(d / "empty.jsonl", "")
    write(d / "cut.jsonl", GSM8K_ROW + "\n" + GSM8K_ROW[: len(GSM8K_ROW) // 2])
    write(d / "latin1.jsonl", GSM8K_ROW.replace("apples", "pommes \xe0 cidre").encode("latin-1") + b"\n")
    write(d / "huge.jsonl", '{"question": "' + "x" * (32 << 20) + "\n")  # a 32 MB line, unterminated
    write(d / "no_answer.jsonl", json.dumps({"question": "q"}) + "\n")
    write(d / "no_marker.jsonl", json.dumps({"question": "q", "answer": "5"}) + "\n")
    write(d / "array.jsonl", "[1, 2]\n")
    write(d / "gzip.jsonl.gz", b"not gzip at all")
    for name in ("no_weights", "cut_weights", "bad_config"):
        shutil.copytree(tiny_model, d / name)
    (d / "no_weights" / "model.safetensors").unlink()
    weights = d / "cut_weights" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    write(d / "bad_config" / "config.json", '{"model_type": "qwen2", "hidd')
    write(d / "a_file", "not a folder")
    (d / "empty_dir").mkdir()
    return d


def gsm8k(path: Path) -> list[str]:
    return ["--tasks", "gsm8k", "--data", f"gsm8k={path}"]


# id -> (argv, what the line must name); the model is the tiny one unless the case is about the model
EVAL_CASES = {
    "yaml not a mapping": (lambda d, m: ["eval", "--config", str(d / "list.yaml")], ["must hold a mapping"]),
    "yaml cut short": (lambda d, m: ["eval", "--config", str(d / "cut.yaml")], ["is not valid YAML"]),
    "yaml not UTF-8": (lambda d, m: ["eval", "--config", str(d / "latin1.yaml")], ["is not valid YAML", "decode"]),
    "yaml missing": (lambda d, m: ["eval", "--config", str(d / "nope.yaml")], ["config file not found"]),
    "unknown config key": (lambda d, m: ["eval", "--config", str(d / "unknown_key.yaml")], ["unknown key 'modle'", "valid keys: model"]),
    "wrong type in yaml": (lambda d, m: ["eval", "--config", str(d / "wrong_type.yaml")], ["'limit' must be a number"]),
    "wrong type flag": (lambda d, m: ["eval", "--model", m, "--temperature", "hot"], ["'temperature' must be a number"]),
    "bad bool flag": (lambda d, m: ["eval", "--model", m, "--config", str(write(d / "b.yaml", "attention: maybe\n"))],
                      ["'attention' must be true or false"]),
    "no model": (lambda d, m: ["eval", "--tasks", "arith"], ["no model given", "--model"]),
    "negative limit": (lambda d, m: ["eval", "--model", m, "--limit", "-1", "--out", str(d / "o_neg")], ["limit must be >= 0, got -1"]),
    "k_max zero": (lambda d, m: ["eval", "--model", m, "--k-max", "0"], ["k_max must be >= 1, got 0"]),
    "unknown backend": (lambda d, m: ["eval", "--model", m, "--backend", "tgi", "--limit", "2", "--out", str(d / "o_be")],
                        ["unknown generation backend 'tgi'", "hf, openai, vllm"]),
    "unknown task": (lambda d, m: ["eval", "--model", m, "--tasks", "mmlu"], ["unknown task 'mmlu'"]),
    "unknown family": (lambda d, m: ["eval", "--model", m, "--families", "medium"], ["unknown constraint family 'medium'"]),
    "unknown category": (lambda d, m: ["eval", "--model", m, "--categories", "tone"], ["unknown constraint category 'tone'"]),
    "unknown split": (lambda d, m: ["eval", "--model", m, "--split", "dev", "--out", str(d / "o_sp")], ["arith has no split 'dev'"]),
    "soft without a judge": (lambda d, m: ["eval", "--model", m, "--families", "soft"], ["soft constraints need an LLM"]),
    "data without =": (lambda d, m: ["eval", "--model", m, "--data", "gsm8k"], ["expects key=value pairs"]),
    "data file missing": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "nope.jsonl")], ["data file not found"]),
    "empty data file": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "empty.jsonl")], ["data file is empty"]),
    "truncated data file": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "cut.jsonl")], ["cut.jsonl:2 is not valid JSON"]),
    "data not UTF-8": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "latin1.jsonl")], ["is not UTF-8 text", "re-encode"]),
    "huge broken line": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "huge.jsonl")], ["huge.jsonl:1 is not valid JSON"]),
    "data missing a column": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "no_answer.jsonl")], ["lacks field(s) answer"]),
    "gsm8k answer without ####": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "no_marker.jsonl")], ["no '#### N' line"]),
    "data rows not objects": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "array.jsonl")], ["is not a JSON object"]),
    "gz that is not gzip": (lambda d, m: ["eval", "--model", m, *gsm8k(d / "gzip.jsonl.gz")], ["cannot read", "uncorrupted"]),
    "model folder missing": (lambda d, m: ["eval", "--model", str(d / "nope"), "--out", str(d / "o_nm")], ["model folder not found"]),
    "checkpoint without weights": (lambda d, m: ["eval", "--model", str(d / "no_weights"), "--limit", "2", "--out", str(d / "o_nw")],
                                   ["has no weights"]),
    "truncated weights": (lambda d, m: ["eval", "--model", str(d / "cut_weights"), "--limit", "2", "--out", str(d / "o_cw")],
                          ["cannot load model folder", "incomplete metadata", "complete checkpoint"]),
    "corrupt config.json": (lambda d, m: ["eval", "--model", str(d / "bad_config"), "--limit", "2", "--out", str(d / "o_bc")],
                            ["not a valid JSON file"]),
    "endpoint not a URL": (lambda d, m: ["eval", "--model", "x", "--backend", "openai", "--base-url", "localhost:8000",
                                         "--limit", "2", "--out", str(d / "o_url")], ["is not an http(s) URL"]),
    "--out is a file": (lambda d, m: ["eval", "--model", m, "--limit", "2", "--out", str(d / "a_file")],
                        ["cannot write", "choose another --out"]),
    "summary of a non-run folder": (lambda d, m: ["summary", str(d / "empty_dir")], ["no run.json"]),
    "report of an empty folder": (lambda d, m: ["report", str(d / "empty_dir"), "--out", str(d / "rep")], ["is not a run folder"]),
    "audit of a missing run": (lambda d, m: ["audit", str(d / "nope")], ["baseline.jsonl not found"]),
    "attention of a missing run": (lambda d, m: ["attention", str(d / "nope")], ["run.json not found"]),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_eval_cli_bad_input_is_one_line_with_its_fix(case, bad, tiny_model, capsys):
    argv, needles = EVAL_CASES[case]
    argv = argv(bad, str(tiny_model))
    capsys.readouterr()
    assert sustain(argv) == 2
    assert_one_line_error(capsys.readouterr().err, *needles)


def test_a_folder_made_by_another_model_is_refused_and_left_alone(bad, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"identity": {"model": "someone-else", "seed": 0}}))
    write(out / "baseline.jsonl", json.dumps({"task": "arith", "item_id": "0", "condition": "base", "output": "4",
                                              "success": True}) + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # small settings: were the folder wrongly accepted, the run would still end
    assert sustain(["eval", "--model", str(tiny_model), "--out", str(out), "--limit", "2", "--max-new-tokens", "8"]) == 2
    assert_one_line_error(capsys.readouterr().err, "was made with model='someone-else'", "choose a new --out")
    # every record and run.json untouched; the empty lock file may stay (an flock: deleting it on exit would race)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".sustain.lock"} == before


def test_a_corrupt_record_in_the_middle_names_the_line(tmp_path, capsys):
    out = tmp_path / "run"
    line = json.dumps({"task": "arith", "item_id": "0", "condition": "base", "success": True})
    write(out / "baseline.jsonl", f"{line}\n{{not json\n{line}\n")
    write(out / "run.json", json.dumps({"identity": {"model": "m", "seed": 0}}))
    assert sustain(["summary", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, "line 2 is corrupt", "restore the file or delete it")


# ---------------------------------------------------------------- failures after some work is done


@pytest.fixture()
def server():
    items = ArithTask().load("test", 8)
    srv = ArithServer({item.prompt: item.gold for item in items})
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openai_eval(server, out: Path, model: str, *extra: str) -> list[str]:
    return ["eval", "--backend", "openai", "--model", model, "--base-url", server.url, "--tasks", "arith", "--limit", "8",
            "--batch-size", "2", "--request-retries", "1", "--out", str(out), *extra]


def test_endpoint_turning_to_garbage_mid_run_keeps_the_records_made(server, tmp_path, capsys):
    out = tmp_path / "run"
    assert sustain(openai_eval(server, out, "garbage-after-4")) == 2
    assert_one_line_error(capsys.readouterr().err, "a body that is not JSON", "'<html><body>502 Bad Gateway", "OpenAI-compatible")
    kept = list(RecordStore(out / "baseline.jsonl"))
    assert len(kept) == 4 and all(r["success"] for r in kept)  # the two batches answered before it broke


def test_endpoint_answering_http_500_is_one_line_after_its_retries(server, tmp_path, capsys):
    assert sustain(openai_eval(server, tmp_path / "run", "http500")) == 2
    assert_one_line_error(capsys.readouterr().err, "answered HTTP 500 after 2 attempt(s)", "check the server's logs")


def test_bad_constraint_stage_settings_keep_the_baseline(server, tmp_path, capsys):
    out = tmp_path / "run"
    soft = ["--families", "soft", "--soft-model", "judge"]
    # the baseline runs, then the soft-constraint judge cannot be reached / is not a URL
    assert sustain(openai_eval(server, out, "solver", *soft, "--soft-base-url", f"http://127.0.0.1:{dead_port()}")) == 2
    assert_one_line_error(capsys.readouterr().err, "soft-constraint LLM", "cannot reach", "check that the endpoint is up")
    baseline = (out / "baseline.jsonl").read_bytes()
    assert len(RecordStore(out / "baseline.jsonl")) == 8
    assert sustain(openai_eval(server, out, "solver", *soft, "--soft-base-url", "judge.local:8000")) == 2
    assert_one_line_error(capsys.readouterr().err, "'judge.local:8000' is not an http(s) URL")
    assert (out / "baseline.jsonl").read_bytes() == baseline  # nothing lost, nothing redone
    # with a judge that answers, the same folder finishes from there without redoing the baseline
    judge = ScriptedLLM(slow_s=0.1)
    try:
        requests_before = len(server.bodies)
        assert sustain(openai_eval(server, out, "solver", *soft, "--soft-base-url", judge.url)) == 0
    finally:
        judge.close()
    assert (out / "baseline.jsonl").read_bytes() == baseline
    constrained = list(RecordStore(out / "constrained.jsonl"))
    control = list(RecordStore(out / "control.jsonl"))  # the noise floor: solved items re-run unconstrained
    assert constrained and len(server.bodies) - requests_before == len(constrained) + len(control)


# ---------------------------------------------------------------- training recipes


def training_error(module: str, argv: list[str], capsys) -> str:
    import importlib

    from sustain.train.config import run_main

    entry = importlib.import_module(module)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: entry.main(argv))
    assert stop.value.code == 2
    return capsys.readouterr().err


RECIPE = "max_steps: 2\nper_device_train_batch_size: 4\ndataset_size: 16\nreport_to: none\n"

# id -> (module, recipe text or None for a good one, extra flags, what the line must name)
TRAIN_CASES = {
    "recipe unknown key": ("sustain.train.sft", RECIPE + "learning_rat: 0.1\n", [], ["unknown key 'learning_rat'", "did you mean learning_rate"]),
    "recipe not a mapping": ("sustain.train.sft", "- max_steps\n", [], ["must hold a mapping"]),
    "recipe not UTF-8": ("sustain.train.sft", "run_name: caf\xe9\n".encode("latin-1"), [], ["is not valid YAML", "decode"]),
    "recipe wrong type": ("sustain.train.sft", RECIPE.replace("max_steps: 2", "max_steps: two"), [],
                          ["max_steps in", "must be a whole number, got 'two'", "write max_steps: 2"]),
    "flag wrong type": ("sustain.train.sft", RECIPE, ["--learning_rate", "fast"], ["invalid float value: 'fast'"]),
    "flag unknown": ("sustain.train.sft", RECIPE, ["--lerning_rate", "1"], ["unknown key 'lerning_rate' in the command line"]),
    "unknown eval_mode": ("sustain.train.sft", RECIPE, ["--eval_mode", "always"], ["unknown eval_mode 'always'"]),
    "negative eval limit": ("sustain.train.sft", RECIPE, ["--eval_mode", "inline", "--eval.limit", "-2"], ["eval block", "limit must be >= 0"]),
    "eval data without =": ("sustain.train.sft", RECIPE, ["--eval.data", "gsm8k"], ["expects key=value pairs, got 'gsm8k'"]),
    "old eval_ key": ("sustain.train.sft", RECIPE + "eval_limit: 5\n", [], ["unknown key 'eval_limit'", "eval: {limit: ...}"]),
    "unknown eval key": ("sustain.train.sft", RECIPE + "eval: {limt: 5}\n", [], ["unknown key 'limt' in the eval block", "did you mean limit"]),
    "unknown eval task": ("sustain.train.sft", RECIPE + "eval_mode: inline\neval: {tasks: [gsm9k]}\n", [], ["eval block", "gsm9k"]),
    "eval k_max 0": ("sustain.train.sft", RECIPE + "eval_mode: inline\neval: {k_max: 0}\n", [], ["eval block", "k_max must be >= 1"]),
    "eval family unknown": ("sustain.train.sft", RECIPE + "eval_mode: inline\neval: {families: [squishy]}\n", [],
                            ["eval block", "unknown constraint family 'squishy'"]),
    "eval data file missing": ("sustain.train.sft", RECIPE + "eval_mode: inline\neval: {tasks: [gsm8k], data: {gsm8k: /nope/test.jsonl}}\n", [],
                               ["eval block", "not found"]),
    "eval soft without a model": ("sustain.train.sft", RECIPE + "eval_mode: inline\neval: {families: [hard, soft]}\n", [],
                                  ["eval block", "soft constraints need an LLM"]),
    "unknown reward": ("sustain.train.grpo", RECIPE + "num_generations: 2\n", ["--reward_funcs", "vibes"], ["unknown reward function 'vibes'"]),
    "dataset missing a column": ("sustain.train.sft", RECIPE, ["--dataset", "{bad}/no_answer.jsonl"], ["lacks column"]),
    "empty dataset": ("sustain.train.sft", RECIPE, ["--dataset", "{bad}/empty.jsonl"], ["data file is empty"]),
    "model without weights": ("sustain.train.sft", RECIPE, ["--model_name_or_path", "{bad}/no_weights"], ["cannot load model", "no file named"]),
    "model with truncated weights": ("sustain.train.sft", RECIPE, ["--model_name_or_path", "{bad}/cut_weights"],
                                     ["cannot load model", "incomplete metadata"]),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_bad_input_is_one_line_with_its_fix(case, bad, tiny_model, tmp_path, capsys):
    module, recipe, flags, needles = TRAIN_CASES[case]
    path = write(tmp_path / "recipe.yaml", recipe)
    argv = ["--config", str(path), "--output_dir", str(tmp_path / "out"), *[f.format(bad=bad) for f in flags]]
    if "--model_name_or_path" not in flags:
        argv += ["--model_name_or_path", str(tiny_model)]
    assert_one_line_error(training_error(module, argv, capsys), *needles)


# ---------------------------------------------------------------- the real entry points


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_real_entry_points_exit_2_with_one_line(bad, tiny_model, tmp_path):
    proc = run_cli(["sustain", "eval", "--model", str(bad / "cut_weights"), "--limit", "2", "--out", str(tmp_path / "o")])
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "sustain: error: cannot load model folder", "incomplete metadata")
    proc = run_cli(["sustain", "eval", "--config", str(bad / "list.yaml")])
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_line_error(proc.stderr, "must hold a mapping")
    recipe = write(tmp_path / "r.yaml", RECIPE.replace("max_steps: 2", "max_steps: two"))
    proc = run_cli(["sustain", "train", "sft", "--config", str(recipe), "--model_name_or_path", str(tiny_model), "--output_dir", str(tmp_path / "t")])
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "sustain: error: max_steps in", "must be a whole number, got 'two'")
