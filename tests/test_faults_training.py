"""SIGKILL training and the report at seeded file opens and resume: the same losses, evals and report as
uninterrupted runs (kill points: tests/kill_points.py)."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
from pathlib import Path

import pytest

from sustain.eval.records import RecordStore

from kill_points import (KILL_AT_OPEN, SEED, STAGES, Launch, check_complete_json, check_store, logged_run, python_env,
                         records, summary_without_paths)

SFT_FLAGS = ["--dataset_size", "64", "--per_device_train_batch_size", "8", "--max_steps", "8", "--save_steps", "1",
             "--logging_steps", "1", "--eval_mode", "inline", "--eval.limit", "4", "--eval.max_new_tokens", "24",
             "--eval.batch_size", "4", "--report_to", "none", "--save_total_limit", "10"]
STEPS = 8  # --max_steps: a checkpoint (and its inline eval) at every step


# The training recipe of these tests (flags set the rest): their own, so the demo recipes stay free to change.
SFT_RECIPE = """\
dataset: arith
instruction_rate: 0.3
learning_rate: 1.0e-3
lr_scheduler_type: constant
max_length: 128
save_strategy: steps
seed: 0
eval: {tasks: [arith], k_max: 1}
"""


def sft_recipe(folder: Path) -> Path:
    path = folder / "sft_recipe.yaml"
    path.write_text(SFT_RECIPE)
    return path


def sft_cmd(model: Path, out: Path, hook: bool = False) -> list[str]:
    entry = ["-c", KILL_AT_OPEN] if hook else ["-m"]
    return [sys.executable, *entry, "sustain", "train", "sft", "--config", str(sft_recipe(out.parent)),
            "--model_name_or_path", str(model), "--output_dir", str(out), *SFT_FLAGS]


def complete_checkpoints(out: Path) -> set[str]:
    return {p.parent.name for p in out.glob("checkpoint-*/trainer_state.json")}


def training_results(out: Path) -> dict:
    """What a finished run must reproduce: losses per step, every checkpoint's eval records and summary."""
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    evals = {d.name: (records(d), summary_without_paths(d / "summary.json")) for d in sorted((out / "eval").glob("checkpoint-*"))}
    return {"losses": [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h], "evals": evals}


@pytest.fixture(scope="module")
def training_reference(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("training_reference") / "run"
    writes = logged_run(sft_cmd(tiny_model, out, hook=True), out, out.parent)
    return {"out": out, "writes": writes, "results": training_results(out)}


def check_training_folder(out: Path) -> None:
    """After a kill: a checkpoint cut short is never the one a resume would pick; eval records are whole."""
    from sustain.train.sft import last_checkpoint

    resume = last_checkpoint(str(out))
    if resume is not None:
        check_complete_json(Path(resume) / "trainer_state.json")
    for eval_dir in (out / "eval").glob("checkpoint-*"):
        for name in STAGES:
            check_store(eval_dir / name)
        check_complete_json(eval_dir / "summary.json")


def injected_kill(model: Path, out: Path, env: dict, at: str, log: Path) -> str:
    launch = Launch(sft_cmd(model, out, hook=True), dict(env, KILL_AT_OPEN=f"{out / at}:1"), log)
    assert launch.finish() == -signal.SIGKILL, launch.stderr[-3000:]
    check_training_folder(out)
    return launch.stderr


@pytest.mark.slow
def test_training_killed_mid_save_mid_eval_and_at_seeded_writes_resumes_to_the_uninterrupted_run(
        tiny_model, training_reference, tmp_path):
    rng = random.Random(SEED)
    out = tmp_path / "run"
    env = python_env(tmp_path)
    # injected, each after the previous one's resume point:
    # a save that just began: checkpoint-3 holds an empty config.json and no weights
    injected_kill(tiny_model, out, env, "checkpoint-3/config.json", tmp_path / "save_begins")
    assert not (out / "checkpoint-3" / "model.safetensors").exists()
    # a save cut at its end: checkpoint-4 has its weights and an empty trainer_state.json
    log = injected_kill(tiny_model, out, env, "checkpoint-4/trainer_state.json", tmp_path / "save_ends")
    assert "warning: skipping" in log and "checkpoint-3: no trainer_state.json" in log  # resumed from checkpoint-2
    assert (out / "checkpoint-4" / "model.safetensors").exists() and (out / "checkpoint-4" / "trainer_state.json").stat().st_size == 0
    assert not (out / "eval" / "checkpoint-4").exists()  # never evaluated: its save did not finish
    # an inline eval that just began, and one that was writing its summary (no on_save comes again for them)
    log = injected_kill(tiny_model, out, env, "eval/checkpoint-5/baseline.jsonl", tmp_path / "eval_begins")
    assert "checkpoint-4: trainer_state.json is truncated" in log  # resumed from checkpoint-3
    assert (out / "eval" / "checkpoint-5" / "run.json").exists() and not (out / "eval" / "checkpoint-5" / "summary.json").exists()
    injected_kill(tiny_model, out, env, "eval/checkpoint-6/.summary.json.tmp", tmp_path / "eval_ends")
    assert (out / "eval" / "checkpoint-5" / "summary.json").exists()  # finished when training restarted
    assert len(list(RecordStore(out / "eval" / "checkpoint-6" / "baseline.jsonl"))) == 4
    assert not (out / "eval" / "checkpoint-6" / "summary.json").exists()
    kills = [f"open {at}" for at in ("checkpoint-3/config.json", "checkpoint-4/trainer_state.json",
                                     "eval/checkpoint-5/baseline.jsonl", "eval/checkpoint-6/.summary.json.tmp")]

    # at seeded writes: past one step's worth of writes (a save and its eval) and short of two, so each
    # restart keeps at least one more checkpoint, dies in training, a save or an eval, and dies before the end
    per_step = len(training_reference["writes"]) // STEPS
    for attempt in range(12):
        before = complete_checkpoints(out)
        nth = rng.randint(per_step + 1, per_step + per_step // 2) if len(kills) < 7 else 0
        launch = Launch(sft_cmd(tiny_model, out, hook=True), dict(env, KILL_AT_OPEN=f"{out}/:{nth}"),
                        tmp_path / f"attempt{attempt}")
        code = launch.finish()
        if code == 0:
            break
        assert code == -signal.SIGKILL, launch.stderr[-3000:]
        check_training_folder(out)
        kills.append(f"write #{nth}, after checkpoint(s) {sorted(complete_checkpoints(out) - before)}")
    else:
        pytest.fail(f"training never finished after kills {kills}")
    print(f"training: {len(kills)} kills survived: {kills}")
    assert len(kills) >= 5, kills
    assert training_results(out) == training_reference["results"]


def test_last_checkpoint_skips_folders_whose_save_was_cut_short(tiny_model, tmp_path, capsys):
    from sustain.train.sft import last_checkpoint

    def checkpoint(step: int, state: str | None = '{"global_step": 1}', cut_weights: bool = False) -> Path:
        folder = tmp_path / f"checkpoint-{step}"
        shutil.copytree(tiny_model, folder)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
        if cut_weights:
            weights = folder / "model.safetensors"
            os.truncate(weights, weights.stat().st_size // 2)
        return folder

    assert last_checkpoint(str(tmp_path / "missing")) is None
    good = checkpoint(2)
    checkpoint(10)  # 10 > 9: the steps are compared as numbers
    checkpoint(9)
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")
    checkpoint(11, state=None)
    checkpoint(12, state='{"global_st')
    checkpoint(13, cut_weights=True)
    shutil.rmtree(tmp_path / "checkpoint-10")
    shutil.rmtree(tmp_path / "checkpoint-9")
    capsys.readouterr()
    assert last_checkpoint(str(tmp_path)) == str(good)
    warnings = capsys.readouterr().err.splitlines()
    then = "(its save was interrupted); resuming from an earlier checkpoint"
    assert warnings == [
        f"warning: skipping {tmp_path / 'checkpoint-13'}: model.safetensors is truncated or corrupt {then}",
        f"warning: skipping {tmp_path / 'checkpoint-12'}: trainer_state.json is truncated or corrupt {then}",
        f"warning: skipping {tmp_path / 'checkpoint-11'}: no trainer_state.json {then}",
    ]


# ---------------------------------------------------------------- report


def report_cmd(inputs: Path, out: Path, hook: bool = False) -> list[str]:
    entry = ["-c", KILL_AT_OPEN] if hook else ["-m"]
    return [sys.executable, *entry, "sustain", "report", str(inputs), "--out", str(out)]


def listing(folder: Path) -> list[str]:
    return sorted(f"{p.name}:{p.stat().st_size}" for p in folder.iterdir()) if folder.exists() else []


def check_report_folder(out: Path, reference: Path) -> None:
    """report.json is written last: if it is there, everything it speaks for is complete."""
    if not (out / "report.json").exists():
        return
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text() == (reference / "report.md").read_text()
    for name in report["plots"].values():
        assert (out / name).stat().st_size == (reference / name).stat().st_size, name


@pytest.mark.slow
def test_report_killed_at_seeded_file_opens_resumes_to_the_same_report(training_reference, tmp_path):
    from sustain.eval.cli import main

    inputs = training_reference["out"]
    reference = tmp_path / "reference"
    writes = logged_run(report_cmd(inputs, reference, hook=True), reference, tmp_path)
    written = sorted(p.name for p in reference.iterdir())
    assert "report.json" in written and "report.md" in written and len(written) >= 4
    expected = (reference / "report.json").read_text()

    rng = random.Random(SEED)
    kills = []
    points = sorted(rng.sample(range(1, len(writes) + 1), min(8, len(writes))))  # temp files count
    for n in points:  # at the open of its nth output file
        out = tmp_path / f"open{n}"
        launch = Launch(report_cmd(inputs, out, hook=True), python_env(tmp_path, KILL_AT_OPEN=f"{out}/:{n}"),
                        out.with_suffix(".log"))
        kills.append((f"open #{n}", out, launch.finish(), listing(out)))
    for point, out, code, _ in kills:
        assert code in (0, -signal.SIGKILL), (point, code)
        check_report_folder(out, reference)
        assert main(["report", str(inputs), "--out", str(out)]) == 0  # the resume: the same command again
        assert (out / "report.json").read_text() == expected.replace(str(reference), str(out))
        check_report_folder(out, reference)
    survived = [(point, files) for point, _, code, files in kills if code == -signal.SIGKILL]
    print(f"report: {len(survived)} kills survived: {survived}")
    assert len(survived) == len(points) >= 4, kills
