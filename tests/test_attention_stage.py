"""The attention and ablation stages on a real eval run folder of the tiny arith model, and `sustain attention`.

The tiny base model never keeps an item once an instruction is added (retention measured ~0), so
every constrained generation of the real run fails. Tests that need a solved group copy the run folder
and relabel some records as solved: the stages only read that label, and the ablation regrades outputs
against the item, so its verdicts can be checked against the true labels.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from sustain.eval.attention.ablation_stage import AblationSettings, run_ablation_stage
from sustain.eval.attention.run_folder import prompt_span
from sustain.eval.attention.stage import run_attention_stage
from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError
from sustain.eval.generators.hf import HFGenerator
from sustain.eval.pipeline import run_eval
from sustain.eval.records import RecordStore, record_key
from sustain.eval.summary import write_summary
from sustain.eval.tasks import get_task
from fakes import NoCalls

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("run.json", "baseline.jsonl", "constraints.jsonl", "constrained.jsonl")


def config(model: Path, out: Path) -> EvalConfig:
    return EvalConfig(model=str(model), tasks=["arith"], limit=16, k_max=1, max_new_tokens=48, batch_size=16,
                      attention=True, out=str(out))


def by_key(path: Path) -> dict:
    return {record_key(r): r for r in RecordStore(path)}


def copy_run(src: Path, dst: Path, relabel_solved: int = 0) -> Path:
    """The eval's records without any attention output; the first `relabel_solved` constrained records
    (by key) marked as solved."""
    dst.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy(src / name, dst / name)
    if relabel_solved:
        records = sorted(RecordStore(dst / "constrained.jsonl"), key=record_key)
        for r in records[:relabel_solved]:
            r["success"] = True
        (dst / "constrained.jsonl").unlink()
        RecordStore(dst / "constrained.jsonl").append(records)
    return dst


def explode():
    raise AssertionError("a stage with nothing to do asked for the model")


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("attention") / "eval"
    return out, run_eval(config(tiny_model, out))


@pytest.fixture(scope="module")
def generator(tiny_model):
    gen = HFGenerator(str(tiny_model), device="cpu")
    yield gen
    gen.close()


@pytest.mark.slow  # the module's eval (~30 s on 2 shared cores) runs with this first test
def test_one_attention_record_per_constrained_generation(finished_run):
    out, summary = finished_run
    constrained = by_key(out / "constrained.jsonl")
    attention = by_key(out / "attention.jsonl")
    assert constrained and attention.keys() == constrained.keys()
    for key, a in attention.items():
        c = constrained[key]
        assert a["success"] == c["success"]
        # re-tokenised output: one step per generated token, the final EOS has no text to re-tokenise
        assert len(a["per_step"]) == c["n_tokens"] - (c["finish_reason"] == "stop")
        per_layer = np.array(a["per_layer"])
        assert per_layer.shape == (2, len(a["per_step"]))
        assert ((per_layer >= 0) & (per_layer <= 1)).all()
        assert np.allclose(a["per_step"], per_layer.mean(0), atol=2e-6)
        assert np.allclose(a["per_token_norm"], np.array(a["per_step"]) / a["span_tokens"], atol=2e-6)
        assert 0 < a["span_tokens"] < a["prompt_tokens"]
    gap = summary["attention"]["gap"]
    assert gap["n"] == len(attention)
    assert gap["n_failed"] == sum(not r["success"] for r in constrained.values())
    assert gap["n_solved"] == sum(r["success"] for r in constrained.values())
    assert json.loads((out / "attention_summary.json").read_text())["gap"] == gap


def test_rerun_computes_nothing_and_changes_nothing(finished_run, tiny_model):
    out, summary = finished_run
    files = ("attention.jsonl", "attention_summary.json")
    before = {f: (out / f).read_bytes() for f in files}
    run_attention_stage(out, explode)
    assert run_eval(config(tiny_model, out), generator=NoCalls())["attention"] == summary["attention"]
    assert {f: (out / f).read_bytes() for f in files} == before


def test_gap_compares_failed_with_solved_generations(finished_run, generator, tmp_path):
    out, _ = finished_run
    run = copy_run(out, tmp_path / "run", relabel_solved=6)
    summary = run_attention_stage(run, generator, batch_size=5)  # other batches than the pipeline's
    records = by_key(run / "attention.jsonl")
    original = by_key(out / "attention.jsonl")
    for key, r in records.items():  # labels and batching change no attention value
        assert np.allclose(r["per_step"], original[key]["per_step"], atol=2e-6)
    # one stratum (arith, hard, k=1): the headline is the plain difference of mean shares of context
    share = {s: [np.mean(r["share_norm"]) for r in records.values() if r["success"] == s] for s in (True, False)}
    gap = summary["gap"]
    assert (gap["n_failed"], gap["n_solved"], gap["n_strata"]) == (len(share[False]), 6, 1)
    assert gap["metric"] == "share_norm" and gap["method"] == "stratified"
    assert gap["value"] == pytest.approx(np.mean(share[False]) - np.mean(share[True]), abs=1e-9)
    assert gap["lo"] <= gap["value"] <= gap["hi"]
    raw = {s: [np.mean(r["per_step"]) for r in records.values() if r["success"] == s] for s in (True, False)}
    pooled = summary["pooled_raw"]  # kept for reference, not the headline
    assert pooled["value"] == pytest.approx(np.mean(raw[False]) - np.mean(raw[True]))
    assert 0 <= pooled["mann_whitney"]["p_value"] <= 1
    assert summary["groups"]["arith"]["gap"]["value"] == pytest.approx(pooled["value"])
    assert [row["layer"] for row in summary["groups"]["all"]["per_layer"]] == [0, 1]
    assert summary["plots"] and all((run / p).is_file() for p in summary["plots"])
    assert write_summary(run)["attention"]["gap"] == gap


def test_layers_choose_what_per_step_averages(finished_run, generator, tmp_path):
    out, _ = finished_run
    run = copy_run(out, tmp_path / "run")
    run_attention_stage(run, generator, layers=[1])
    for r in RecordStore(run / "attention.jsonl"):
        assert r["layers"] == [1] and np.allclose(r["per_step"], r["per_layer"][1], atol=2e-6)
    with pytest.raises(UserError, match="layers"):
        run_attention_stage(run, generator)  # the records were averaged over other layers
    with pytest.raises(UserError, match="do not exist"):
        run_attention_stage(copy_run(out, tmp_path / "other"), generator, layers=[5])


@pytest.mark.parametrize("position", ["append", "prepend", "system"])
def test_constraint_tokens_found_in_every_position(generator, position):
    task = get_task("arith")
    item = task.load("test", 1)[0]
    constraint = "Answer with less than 10 words."
    # the task text itself contains the constraint's words: only the added copy is the constraint
    item = type(item)(item.id, f"{constraint} {item.prompt} {constraint}", item.gold)
    record = {"messages": task.messages(item, constraint=constraint, position=position),
              "constraint_text": constraint, "position": position}
    span = prompt_span(generator, record)
    tok = generator.tokenizer
    assert tok.decode(span.input_ids[span.start : span.end]).strip() == constraint
    before = tok.decode(span.input_ids[: span.start]).rstrip()
    after = tok.decode(span.input_ids[span.end :]).lstrip()
    if position == "append":
        assert before.endswith(item.prompt)
    elif position == "prepend":
        assert after.startswith(item.prompt)
    else:  # the system message comes before the user's task text
        assert item.prompt not in before and item.prompt in after
    assert span.input_ids == tok(generator.prompt_text(record["messages"]), add_special_tokens=False)["input_ids"]


def test_neutral_ablation_reproduces_and_regrades_the_generations(finished_run, generator, tmp_path):
    """factor 1 changes nothing: every regenerated output equals the original and is graded as it truly was."""
    out, _ = finished_run
    run = copy_run(out, tmp_path / "run", relabel_solved=3)
    summary = run_ablation_stage(run, generator, AblationSettings(factor=1.0, control_factor=1.0, limit=3))
    truth = by_key(out / "constrained.jsonl")
    records = list(RecordStore(run / "ablation.jsonl"))
    assert sorted(r["direction"] for r in records) == ["control"] * 6 + ["down"] * 3 + ["up"] * 3
    for r in records:
        original = truth[(r["task"], r["item_id"], r["base_condition"])]
        assert r["condition"] == f"{r['base_condition']}|{r['direction']}"
        assert (r["output"], r["n_tokens"], r["success"]) == (original["output"], original["n_tokens"], original["success"])
    true_solved = sum(r["success"] for r in records if r["direction"] == "up")
    assert summary["broken"]["n"] == 3 and summary["broken"]["successes"] == 3 - true_solved
    assert summary["recovered"]["successes"] == sum(r["success"] for r in records if r["direction"] == "down")
    # the factor-1 control reproduces too, so nothing is left net of it
    assert summary["recovered_net"]["value"] == 0 and summary["broken_net"]["value"] == 0
    assert summary["recovered_net"]["n"] == summary["broken_net"]["n"] == 3


def test_ablation_records_summary_and_resume(finished_run, generator, tmp_path):
    out, _ = finished_run
    run = copy_run(out, tmp_path / "run", relabel_solved=2)
    settings = AblationSettings(factor=0.0, control_factor=4.0, layers=(0, 1), after_step=2, limit=2)
    summary = run_ablation_stage(run, generator, settings)
    records = by_key(run / "ablation.jsonl")
    down = [r for r in records.values() if r["direction"] == "down"]
    up = [r for r in records.values() if r["direction"] == "up"]
    control = [r for r in records.values() if r["direction"] == "control"]
    assert len(down) == len(up) == 2 and len(control) == 4 and all(r["factor"] == 1.0 for r in control)
    assert all((r["factor"], r["layers"], r["after_step"]) == (0.0, [0, 1], 2) for r in down)
    assert all(not r["original_success"] for r in down)
    assert all(r["factor"] == 4.0 and r["original_success"] for r in up)
    assert summary["recovered"]["n"] == 2 and summary["recovered"]["successes"] == sum(r["success"] for r in down)
    assert summary["broken"]["n"] == 2 and summary["broken"]["successes"] == sum(not r["success"] for r in up)
    assert summary["by_task"]["arith"]["recovered"] == summary["recovered"]
    assert write_summary(run)["ablation"] == summary
    before = (run / "ablation.jsonl").read_bytes()
    assert run_ablation_stage(run, explode, settings) == summary
    assert (run / "ablation.jsonl").read_bytes() == before
    with pytest.raises(UserError, match="ablation settings"):
        run_ablation_stage(run, generator, AblationSettings(factor=0.5, limit=2))


def sustain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sustain", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # a fresh interpreter loads torch, the model, and generates
def test_sustain_attention_on_a_finished_run(finished_run, tmp_path):
    out, _ = finished_run
    run = copy_run(out, tmp_path / "run")
    done = sustain("attention", str(run), "--ablation", "--ablation-limit", "2", "--after-step", "1")
    assert done.returncode == 0, done.stderr
    assert "attention gap" in done.stdout and "recovered" in done.stdout
    assert by_key(run / "attention.jsonl").keys() == by_key(run / "constrained.jsonl").keys()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["attention"]["gap"]["n"] == len(by_key(run / "constrained.jsonl"))
    assert summary["ablation"]["recovered"]["n"] == 2 and summary["ablation"]["settings"]["after_step"] == 1


def test_remote_backend_run_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    cfg = EvalConfig(model="some-served-model", backend="openai", base_url="http://localhost:1/v1", out=str(run))
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"identity": cfg.identity(), "config": asdict(cfg)}))
    with pytest.raises(UserError, match="openai"):
        run_attention_stage(run)
    with pytest.raises(UserError, match="openai"):
        run_ablation_stage(run)
    done = sustain("attention", str(run))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "openai" in done.stderr and "fix:" in done.stderr
    assert not (run / "attention.jsonl").exists()


@pytest.mark.parametrize("bad", [dict(factor=-1.0), dict(control_factor=float("inf")), dict(after_step=-1), dict(limit=0)])
def test_bad_ablation_settings_are_user_errors(bad):
    with pytest.raises(UserError, match="ablation"):
        AblationSettings(**bad)


def test_a_folder_without_run_json_is_refused(tmp_path):
    with pytest.raises(UserError, match="run.json"):
        run_attention_stage(tmp_path)
