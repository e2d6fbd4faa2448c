"""Bad input, round two: every setting, data field, model folder and run folder is checked at the edge.

Each case asserts one line `sustain: error: <problem> (fix: <fix>)`, exit 2, no traceback, and that
the records already in the run folder are left as they were. Cases run main() in this process; the
few that need a real process (a full stdout, an ASCII locale, a race) start one.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from sustain.eval.cli import main as sustain
from sustain.eval.config import EvalConfig
from sustain.eval.run_files import RunLock
from sustain.eval.validate import validate_eval_config
from test_bad_inputs import assert_one_line_error, training_error, write

GSM8K_ROW = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"}
HOTPOT_ROW = {"_id": "a1", "question": "Who?", "answer": "Ann", "context": [["T", ["Ann did it."]]]}
BASE_RECORD = {"task": "arith", "item_id": "test-00000", "condition": "base", "success": True, "output": "The answer is 5.",
               "answer": "5", "score": 1.0, "detail": {}, "gold": "5", "messages": []}


def jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def edges(tiny_model, tmp_path_factory) -> Path:
    """Damaged data files and model folders, made once (no weights are loaded to make them)."""
    d = tmp_path_factory.mktemp("edges")
    write(d / "inf_limit.yaml", f"model: {tiny_model}\nlimit: .inf\n")
    write(d / "float_limit.yaml", f"model: {tiny_model}\nlimit: 2.5\n")
    write(d / "null_out.yaml", f"model: {tiny_model}\nout: null\n")
    write(d / "null_model.yaml", "model: null\n")
    write(d / "null_data.yaml", f"model: {tiny_model}\ndata: null\n")
    jsonl(d / "gsm_number.jsonl", [{**GSM8K_ROW, "answer": 5}])
    jsonl(d / "gsm_null_q.jsonl", [{**GSM8K_ROW, "question": None}])
    jsonl(d / "gsm_list_q.jsonl", [{**GSM8K_ROW, "question": ["a", "b"]}])
    jsonl(d / "hotpot_number.jsonl", [{**HOTPOT_ROW, "answer": 1984}])
    jsonl(d / "hotpot_dup.jsonl", [HOTPOT_ROW, {**HOTPOT_ROW, "question": "Who else?"}])
    jsonl(d / "hotpot_ctx.jsonl", [{**HOTPOT_ROW, "context": [["T", "not a list of sentences"]]}])
    jsonl(d / "humaneval_bad.jsonl", [{"task_id": "H/0", "prompt": 7, "test": "", "entry_point": "f"}])
    for name in ("bad_tokenizer", "no_tokenizer", "odd_type", "wrong_shape", "locked"):
        shutil.copytree(tiny_model, d / name)
    write(d / "bad_tokenizer" / "tokenizer.json", '{"version": "1.0", "model": {"type": "BPE", "vo')
    for f in (d / "no_tokenizer").iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    config = json.loads((d / "odd_type" / "config.json").read_text())
    write(d / "odd_type" / "config.json", json.dumps({**config, "model_type": "qwen99"}))
    write(d / "wrong_shape" / "config.json", json.dumps({**config, "hidden_size": config["hidden_size"] * 2,
                                                         "intermediate_size": config.get("intermediate_size", 64) * 2}))
    (d / "adapter").mkdir()
    write(d / "adapter" / "adapter_config.json", json.dumps({"base_model_name_or_path": str(d / "gone" / "base"),
                                                             "peft_type": "LORA"}))
    write(d / "a_file", "x")
    return d


def ev(model: str, *flags: str) -> list[str]:
    return ["eval", "--model", model, *flags]


# id -> (argv from (edges folder, tiny model, tmp out), what the one line must name)
CASES = {
    # settings: types, ranges, finiteness, sizes that would not finish
    "max-new-tokens 0": (lambda d, m, o: ev(m, "--max-new-tokens", "0", "--out", o), ["max_new_tokens must be >= 1"]),
    "request-retries -1": (lambda d, m, o: ev(m, "--request-retries", "-1", "--out", o), ["request_retries must be >= 0"]),
    "limit .inf in yaml": (lambda d, m, o: ["eval", "--config", str(d / "inf_limit.yaml"), "--out", o], ["'limit' must be a finite number"]),
    "limit 2.5 in yaml": (lambda d, m, o: ["eval", "--config", str(d / "float_limit.yaml"), "--out", o], ["(a whole number), got 2.5"]),
    "temperature nan": (lambda d, m, o: ev(m, "--temperature", "nan", "--out", o), ["'temperature' must be a finite number"]),
    "temperature -inf": (lambda d, m, o: ev(m, "--temperature=-inf", "--out", o), ["'temperature' must be a finite number"]),
    "temperature negative": (lambda d, m, o: ev(m, "--temperature", "-0.5", "--out", o), ["temperature must be >= 0.0"]),
    "k-max 1e8 (hang)": (lambda d, m, o: ev(m, "--k-max", "100000000", "--out", o), ["k_max must be <= 64", "would not finish"]),
    "limit 1e9 (hang)": (lambda d, m, o: ev(m, "--limit", "1000000000", "--out", o), ["limit must be <= 1000000"]),
    "arith limit beyond its problems": (lambda d, m, o: ev(m, "--limit", "900000", "--out", o), ["distinct ones exist"]),
    "out empty": (lambda d, m, o: ev(m, "--out", ""), ["no out given: it is empty or null", "--out FOLDER"]),
    "out null in yaml": (lambda d, m, o: ["eval", "--config", str(d / "null_out.yaml")], ["config key 'out' is null"]),
    "model null in yaml": (lambda d, m, o: ["eval", "--config", str(d / "null_model.yaml"), "--out", o], ["config key 'model' is null"]),
    "data null in yaml": (lambda d, m, o: ["eval", "--config", str(d / "null_data.yaml"), "--out", o], ["config key 'data' is null"]),
    "model empty": (lambda d, m, o: ev("", "--out", o), ["no model given: it is empty or null"]),
    "model None text": (lambda d, m, o: ev("None", "--out", o), ["no model given: it is empty or null"]),
    "batch-size 0": (lambda d, m, o: ev(m, "--batch-size", "0", "--out", o), ["batch_size must be >= 1"]),
    "seed negative": (lambda d, m, o: ev(m, "--seed", "-3", "--out", o), ["seed must be >= 0"]),
    "request timeout 0": (lambda d, m, o: ev(m, "--request-timeout-s", "0", "--out", o), ["request_timeout_s must be >= 0.001"]),
    "sandbox-workers 0": (lambda d, m, o: ev(m, "--sandbox-workers", "0", "--out", o), ["sandbox_workers must be >= 1"]),
    "unknown position": (lambda d, m, o: ev(m, "--position", "middle", "--out", o), ["unknown constraint position 'middle'"]),
    "negative attention layer": (lambda d, m, o: ev(m, "--attention-layers", "-1", "--out", o), ["attention_layers must be >= 0"]),
    "attention layer past the model": (lambda d, m, o: ev(m, "--attention", "--attention-layers", "0,99", "--out", o),
                                       ["layer 99 does not exist"]),
    "ablation factor nan": (lambda d, m, o: ev(m, "--ablation-factor", "nan", "--out", o), ["'ablation_factor' must be a finite number"]),
    "api key instead of its name": (lambda d, m, o: ev(m, "--api-key-env", "sk-live-123", "--out", o), ["NAME of an environment variable"]),
    "openai without base url": (lambda d, m, o: ev("served", "--backend", "openai", "--out", o), ["base_url is not set"]),
    "attention on an endpoint": (lambda d, m, o: ev("served", "--backend", "openai", "--base-url", "http://x:1/v1", "--attention",
                                                    "--out", o), ["need the model's weights"]),
    "data for an unknown task": (lambda d, m, o: ev(m, "--data", "mmlu=/x.jsonl", "--out", o), ["--data names unknown task 'mmlu'"]),
    "tasks only commas": (lambda d, m, o: ev(m, "--tasks", ",", "--out", o), ["no tasks given"]),
    "out under a file": (lambda d, m, o: ev(m, "--out", str(d / "a_file" / "run")), ["a_file is a file, not a folder", "another --out"]),
    # data fields of the wrong type, refused at load
    "gsm8k answer a JSON number": (lambda d, m, o: ev(m, "--tasks", "gsm8k", "--data", f"gsm8k={d / 'gsm_number.jsonl'}", "--out", o),
                                   ["gsm_number.jsonl:1", "field 'answer' must be non-empty text, got 5"]),
    "gsm8k null question": (lambda d, m, o: ev(m, "--tasks", "gsm8k", "--data", f"gsm8k={d / 'gsm_null_q.jsonl'}", "--out", o),
                            ["field 'question' must be non-empty text, got None"]),
    "gsm8k list question": (lambda d, m, o: ev(m, "--tasks", "gsm8k", "--data", f"gsm8k={d / 'gsm_list_q.jsonl'}", "--out", o),
                            ["field 'question' must be non-empty text"]),
    "hotpotqa answer a number": (lambda d, m, o: ev(m, "--tasks", "hotpotqa", "--data", f"hotpotqa={d / 'hotpot_number.jsonl'}",
                                                    "--out", o), ["field 'answer' must be non-empty text, got 1984"]),
    "hotpotqa duplicate _id": (lambda d, m, o: ev(m, "--tasks", "hotpotqa", "--data", f"hotpotqa={d / 'hotpot_dup.jsonl'}",
                                                  "--out", o), ["item id 'a1' appears twice"]),
    "hotpotqa context malformed": (lambda d, m, o: ev(m, "--tasks", "hotpotqa", "--data", f"hotpotqa={d / 'hotpot_ctx.jsonl'}",
                                                      "--out", o), ["context must be a list of [title, [sentences]]"]),
    "humaneval prompt not text": (lambda d, m, o: ev(m, "--tasks", "humaneval", "--data", f"humaneval={d / 'humaneval_bad.jsonl'}",
                                                     "--out", o), ["field 'prompt' must be non-empty text"]),
    # model folders
    "corrupt tokenizer.json": (lambda d, m, o: ev(str(d / "bad_tokenizer"), "--out", o), ["tokenizer.json is not a valid JSON file"]),
    "missing tokenizer": (lambda d, m, o: ev(str(d / "no_tokenizer"), "--out", o), ["has no tokenizer"]),
    "unknown model_type": (lambda d, m, o: ev(str(d / "odd_type"), "--out", o), ["model_type 'qwen99'", "unknown to transformers"]),
    "adapter base missing": (lambda d, m, o: ev(str(d / "adapter"), "--out", o), ["needs its base model", "does not exist"]),
    "model path under a file": (lambda d, m, o: ev(str(d / "a_file" / "model"), "--out", o), ["a_file is a file, not a folder"]),
    # argparse mistakes carry a fix
    "unknown flag": (lambda d, m, o: ev(m, "--bogus", "1"), ["unrecognized arguments: --bogus", "sustain eval --help"]),
    "audit --n -5": (lambda d, m, o: ["audit", o, "--n", "-5"], ["argument --n", "expected a number from 0"]),
    "audit without a run": (lambda d, m, o: ["audit"], ["the following arguments are required: run", "--help"]),
    "unknown subcommand": (lambda d, m, o: ["evaluate"], ["invalid choice: 'evaluate'", "sustain --help"]),
    "attention bad layer list": (lambda d, m, o: ["attention", o, "--layers", "a,b"], ["expected layer numbers"]),
    "attention batch size 0": (lambda d, m, o: ["attention", o, "--batch-size", "0"], ["argument --batch-size"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_setting_is_one_line_and_claims_nothing(case, edges, tiny_model, tmp_path, capsys):
    argv, needles = CASES[case]
    out = tmp_path / "run"
    capsys.readouterr()
    assert sustain(argv(edges, str(tiny_model), str(out))) == 2
    assert_one_line_error(capsys.readouterr().err, *needles)
    assert not (out / "run.json").exists()  # refused before the folder was claimed


def test_unreadable_model_folder_names_permissions(edges, monkeypatch, tmp_path, capsys):
    import sustain.eval.model_check as model_check

    locked = str(edges / "locked")
    real = os.access
    monkeypatch.setattr(model_check.os, "access", lambda p, mode: False if str(p) == locked else real(p, mode))
    assert sustain(ev(locked, "--out", str(tmp_path / "run"))) == 2
    assert_one_line_error(capsys.readouterr().err, "cannot read model folder", "permission denied", "chmod")


def test_weights_not_matching_the_config_are_named_and_do_not_lock_the_folder(edges, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert sustain(ev(str(edges / "wrong_shape"), "--limit", "2", "--out", str(out))) == 2
    assert_one_line_error(capsys.readouterr().err, "do not match its config.json", "saved with these weights")
    # the corrected command resumes in the same folder: a claim without records protects nothing
    assert sustain(ev(str(tiny_model), "--limit", "2", "--max-new-tokens", "8", "--out", str(out))) == 0
    assert json.loads((out / "run.json").read_text())["identity"]["model"] == str(Path(tiny_model).resolve())


# ---------------------------------------------------------------- normalised identity, claim after validation


def test_duplicated_settings_are_normalised(tiny_model, tmp_path):
    cfg = validate_eval_config(EvalConfig(model=str(tiny_model), out=str(tmp_path), tasks=["arith", "arith"],
                                          families=["hard", "hard"], categories=["length", "length"],
                                          attention_layers=[0, 0, 1]))
    assert (cfg.tasks, cfg.families, cfg.categories, cfg.attention_layers) == (["arith"], ["hard"], ["length"], [0, 1])


def test_relative_model_path_is_stored_absolute_and_another_model_there_is_refused(tiny_model, tmp_path, monkeypatch, capsys):
    here, there = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_model, here / "model")
    (there).mkdir()
    shutil.copytree(tiny_model, there / "model")
    out = tmp_path / "run"
    monkeypatch.chdir(here)
    assert sustain(ev("./model", "--limit", "2", "--max-new-tokens", "8", "--out", str(out))) == 0
    assert json.loads((out / "run.json").read_text())["identity"]["model"] == str(here / "model")
    before = (out / "baseline.jsonl").read_bytes()
    monkeypatch.chdir(there)  # the same relative path is another model now
    capsys.readouterr()
    assert sustain(ev("./model", "--limit", "2", "--max-new-tokens", "8", "--out", str(out))) == 2
    assert_one_line_error(capsys.readouterr().err, "was made with model=", "choose a new --out")
    assert (out / "baseline.jsonl").read_bytes() == before


def test_records_without_a_run_json_model_are_refused(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    jsonl(out / "baseline.jsonl", [BASE_RECORD])
    write(out / "run.json", json.dumps({"identity": {"seed": 0}}))
    # refused (by the missing model, or first by records made without a data fingerprint), never mixed
    assert sustain(ev(str(tiny_model), "--out", str(out))) == 2
    assert_one_line_error(capsys.readouterr().err, "delete the folder to start over")
    (out / "run.json").unlink()
    assert sustain(ev(str(tiny_model), "--out", str(out))) == 2
    assert_one_line_error(capsys.readouterr().err, "delete the folder to start over")
    assert (out / "baseline.jsonl").read_text() == json.dumps(BASE_RECORD) + "\n"


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        assert sustain(ev(str(tiny_model), "--limit", "2", "--out", str(out))) == 2
        assert_one_line_error(capsys.readouterr().err, "is in use by another sustain process", f"pid {os.getpid()}")
        assert not (out / "run.json").exists()
    with RunLock(out):  # released: a new holder gets it at once
        pass


# ---------------------------------------------------------------- damaged run folders


def run_folder(tmp_path: Path, run_json, baseline: str | None = None) -> Path:
    out = tmp_path / "run"
    write(out / "run.json", run_json if isinstance(run_json, str) else json.dumps(run_json))
    if baseline is not None:
        write(out / "baseline.jsonl", baseline)
    return out


RUN_CASES = {
    "run.json truncated": ('{"identity": {"model": "m", "se', None, ["summary"], ["run.json is corrupt", "restore it"]),
    "run.json a list": ("[]", None, ["summary"], ["not a run.json written by `sustain eval`"]),
    "run.json without seed": ({"identity": {"model": "m"}}, None, ["summary"], ["lacks identity.seed"]),
    "{} line in baseline": ({"identity": {"model": "m", "seed": 0}}, "{}\n", ["summary"], ["line 1 is not a record"]),
    "baseline record without success": ({"identity": {"model": "m", "seed": 0}},
                                        json.dumps({**BASE_RECORD, "success": None}) + "\n", ["summary"], ["has no valid 'success'"]),
    "audit of a {} line": ({"identity": {"model": "m", "seed": 0}}, "{}\n", ["audit"], ["line 1 is not a record"]),
    "attention on truncated run.json": ('{"ident', None, ["attention"], ["run.json is corrupt"]),
    "eval into a folder with a corrupt record": (None, "[1]\n" + json.dumps(BASE_RECORD) + "\n", ["eval"], ["line 1 is not a record"]),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_damaged_run_folder_is_one_line_and_left_alone(case, tiny_model, tmp_path, capsys):
    run_json, baseline, command, needles = RUN_CASES[case]
    out = run_folder(tmp_path, run_json or {"identity": {"model": str(Path(tiny_model).resolve()), "seed": 0}}, baseline)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ev(str(tiny_model), "--out", str(out)) if command == ["eval"] else [*command, str(out)]
    capsys.readouterr()
    assert sustain(argv) == 2
    assert_one_line_error(capsys.readouterr().err, *needles)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".sustain.lock"} == before


def test_audit_on_a_read_only_folder_names_permissions(tmp_path, monkeypatch, capsys):
    import sustain.eval.audit as audit

    out = run_folder(tmp_path, {"identity": {"model": "m", "seed": 0}}, json.dumps(BASE_RECORD) + "\n")
    jsonl(out / "constraints.jsonl", [{"task": "arith", "item_id": "test-00000", "condition": "extract", "candidates": []}])
    real_open = Path.open

    def read_only(self, mode="r", *a, **k):
        if "w" in mode and self.parent == out:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, mode, *a, **k)

    monkeypatch.setattr(audit.Path, "open", read_only)
    assert sustain(["audit", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, "permission denied", "chmod")


def test_report_out_under_a_file(tmp_path, capsys):
    write(tmp_path / "f", "x")
    out = run_folder(tmp_path, {"identity": {"model": "m", "seed": 0}}, json.dumps(BASE_RECORD) + "\n")
    assert sustain(["summary", str(out)]) == 0
    capsys.readouterr()
    assert sustain(["report", str(out), "--out", str(tmp_path / "f" / "rep")]) == 2
    assert_one_line_error(capsys.readouterr().err, "is a file, not a folder")


# ---------------------------------------------------------------- grading never loses a batch


def test_an_item_the_grader_cannot_handle_fails_alone_with_its_reason():
    from sustain.eval.generators import Generation
    from sustain.eval.pipeline import grade_safely
    from sustain.eval.tasks import Grade, Item, Task

    class Fragile(Task):
        name = "fragile"

        def load(self, split="test", limit=None):
            return []

        def grade(self, item, output):
            return Grade(item.gold.lower() == output, output, 1.0, {})  # a number as gold breaks .lower()

    items = [Item("0", "q", "yes"), Item("1", "q", 1984), Item("2", "q", "no")]
    outputs = [Generation(text, "stop", 1) for text in ("yes", "1984", "no")]
    grades = grade_safely(Fragile(), items, outputs)
    assert [g.success for g in grades] == [True, False, True]
    assert grades[1].detail["reason"] == "grading error" and "AttributeError" in grades[1].detail["error"]


# ---------------------------------------------------------------- recipes: checked at training start

RECIPE = "max_steps: 2\nper_device_train_batch_size: 4\ndataset_size: 16\nreport_to: none\n"
INLINE = RECIPE + "eval_mode: inline\n"
RECIPE_CASES = {
    "max_steps 2.5": (RECIPE.replace("max_steps: 2", "max_steps: 2.5"), ["max_steps", "must be a whole number, got 2.5"]),
    "learning_rate nan": (RECIPE + "learning_rate: .nan\n", ["learning_rate", "must be a finite number"]),
    "batch size 0": (RECIPE.replace("per_device_train_batch_size: 4", "per_device_train_batch_size: 0"),
                     ["per_device_train_batch_size must be at least 1"]),
    "eval max_new_tokens 0": (INLINE + "eval: {max_new_tokens: 0}\n", ["max_new_tokens must be >= 1"]),
    "eval k_max 0": (INLINE + "eval: {k_max: 0}\n", ["k_max must be >= 1"]),
    "eval unknown task": (INLINE + "eval: {tasks: [mmlu]}\n", ["unknown task 'mmlu'"]),
    "eval unknown family": (INLINE + "eval: {families: [medium]}\n", ["unknown constraint family 'medium'"]),
    "eval data file missing": (INLINE + "eval: {tasks: [gsm8k], data: {gsm8k: /nonexistent/gsm8k.jsonl}}\n", ["data file not found"]),
    "eval limit 1e9": (INLINE + "eval: {limit: 1000000000}\n", ["limit must be <= 1000000"]),
    "eval temperature nan": (INLINE + "eval: {temperature: .nan}\n", ["'temperature' must be a finite number"]),
    "report_to wandb without a key": (RECIPE.replace("report_to: none", "report_to: [wandb]"), ["no W&B key", "WANDB_MODE=offline"]),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_recipe_mistakes_are_refused_before_training(case, tiny_model, tmp_path, monkeypatch, capsys):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    recipe, needles = RECIPE_CASES[case]
    path = write(tmp_path / "recipe.yaml", recipe)
    out = tmp_path / "out"
    argv = ["--config", str(path), "--output_dir", str(out), "--model_name_or_path", str(tiny_model)]
    assert_one_line_error(training_error("sustain.train.sft", argv, capsys), *needles)
    assert not any(out.glob("checkpoint-*"))  # no training step was taken
