"""SFT on the tiny model on CPU: checkpoints, per-checkpoint eval (inline / sbatch), W&B, resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_offline import history, run_dirs

ROOT = Path(__file__).resolve().parents[1]

# small enough for seconds per run; 2 saves per run
SFT_FLAGS = ["--dataset_size", "64", "--per_device_train_batch_size", "8", "--max_steps", "4", "--save_steps", "2",
             "--logging_steps", "1", "--eval.limit", "8", "--eval.max_new_tokens", "24", "--eval.batch_size", "8"]


def train_env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb_dir"), WANDB_PROJECT="tests",
               WANDB_SILENT="true", TOKENIZERS_PARALLELISM="false", **extra)
    (tmp_path / "wandb_dir").mkdir(exist_ok=True)
    return env


def run_training(module: str, recipe: str, model: Path, out: Path, flags: list[str], env: dict,
                 launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(launcher or [sys.executable]), "-m", module, "--config", str(ROOT / "recipes" / "demo" / recipe),
           "--model_name_or_path", str(model), "--output_dir", str(out), *flags]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def sustain_rows(wandb_dir: Path) -> dict[int, dict]:
    """checkpoint step -> the W&B row that carries its sustain metrics, over every run in the folder."""
    rows = {}
    for run in run_dirs(wandb_dir):
        for row in history(run):
            if "sustain/checkpoint_step" in row:
                assert row["sustain/checkpoint_step"] not in rows, "a checkpoint was logged twice"
                rows[row["sustain/checkpoint_step"]] = row
    return rows


def assert_evaluated(out: Path, steps: list[int]) -> None:
    for step in steps:
        assert (out / f"checkpoint-{step}").is_dir()
        summary = json.loads((out / "eval" / f"checkpoint-{step}" / "summary.json").read_text())
        assert summary["model"].endswith(f"checkpoint-{step}") and summary["accuracy"]["n"] == 8


def test_sft_evaluates_every_checkpoint_and_logs_at_its_step(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_training("sustain.train.sft", "sft.yaml", tiny_model, out, SFT_FLAGS, train_env(tmp_path))
    assert_evaluated(out, [2, 4])
    rows = sustain_rows(tmp_path / "wandb_dir")
    assert sorted(rows) == [2, 4]
    for step, row in rows.items():
        summary = json.loads((out / "eval" / f"checkpoint-{step}" / "summary.json").read_text())
        assert row["sustain/accuracy"] == pytest.approx(summary["accuracy"]["value"])
        assert row["train/global_step"] == step
        cell = summary["sustain"]["headline"]["arith"]["hard"]  # the headline: k=1, per task and family
        if cell["value"] is not None:
            assert row["sustain/score/arith/hard"] == pytest.approx(cell["value"])
            assert row["sustain/control/arith/hard"] == pytest.approx(cell["control"]["value"])
        else:  # undefined is left out, never logged as 0
            assert "sustain/score/arith/hard" not in row
        assert not any(key.startswith(("sustain/score/task", "sustain/score/k")) or key == "sustain/score"
                       for key in row)  # nothing pooled over families or k
    # the tiny base solves arith, so a score is defined for at least one checkpoint
    assert any("sustain/score/arith/hard" in row for row in rows.values())
    # the training curves are in the same run
    loss_steps = [r["train/global_step"] for run in run_dirs(tmp_path / "wandb_dir") for r in history(run) if "train/loss" in r]
    assert loss_steps == [1, 2, 3, 4]


@pytest.mark.slow
def test_resume_continues_and_does_not_reevaluate(tiny_model, tmp_path):
    out = tmp_path / "run"
    env = train_env(tmp_path)
    run_training("sustain.train.sft", "sft.yaml", tiny_model, out, SFT_FLAGS, env)
    first = {s: (out / "eval" / f"checkpoint-{s}" / "baseline.jsonl").stat().st_mtime_ns for s in (2, 4)}
    run_training("sustain.train.sft", "sft.yaml", tiny_model, out, [*SFT_FLAGS, "--max_steps", "6"], env)
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    # resumed: the log holds steps 1-4 from the first run and only 5-6 from the second
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]
    assert {s: (out / "eval" / f"checkpoint-{s}" / "baseline.jsonl").stat().st_mtime_ns for s in (2, 4)} == first
    assert_evaluated(out, [2, 4, 6])
    # the restart continued the same W&B run (resumed by id), and no checkpoint was logged twice
    run_ids = {d.name.rsplit("-", 1)[1] for d in run_dirs(tmp_path / "wandb_dir")}  # offline-run-<time>-<id>
    assert len(run_dirs(tmp_path / "wandb_dir")) == 2 and len(run_ids) == 1
    assert sorted(sustain_rows(tmp_path / "wandb_dir")) == [2, 4, 6]


def test_sbatch_results_arriving_later_are_logged_at_their_checkpoint(tmp_path, monkeypatch):
    """`sync` after training: the eval job's summary lands in the training run at the checkpoint's step."""
    import wandb

    from sustain.train.callbacks import log_finished

    out = tmp_path / "run"
    summary = {"accuracy": {"value": 0.5, "lo": 0.2, "hi": 0.8, "n": 10},
               "sustain": {"headline": {"arith": {"hard": {"value": 0.75, "lo": 0.4, "hi": 0.9, "n": 4,
                                                           "control": {"value": 1.0, "lo": 0.5, "hi": 1.0, "n": 4}}}}},
               "constrained_runs": 4, "failures": {"reasoning": 1}, "failure_examples": [{"task": "arith", "item_id": "1", "class": "reasoning",
                                                                   "constraint": "c", "output": "o"}]}
    (out / "eval" / "checkpoint-10").mkdir(parents=True)
    (out / "eval" / "checkpoint-10" / "summary.json").write_text(json.dumps(summary))
    (out / "eval" / "checkpoint-20").mkdir(parents=True)  # still running: no summary yet
    for key, value in dict(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true").items():
        monkeypatch.setenv(key, value)
    run = wandb.init(project="tests", dir=str(tmp_path), mode="offline")  # dir: another test's W&B may have set up first
    try:
        for step in range(1, 31):  # training has moved on to step 30 when the result arrives
            run.log({"train/loss": 1.0 / step, "train/global_step": step})
        assert log_finished(out, run) == [10]
        assert log_finished(out, run) == []  # already logged to this run
    finally:
        run.finish()
    (row,) = [r for d in run_dirs(tmp_path) for r in history(d) if "sustain/score/arith/hard" in r]
    assert row["sustain/checkpoint_step"] == 10 and row["sustain/score/arith/hard"] == 0.75
    assert row["sustain/score/arith/hard_n"] == 4 and row["sustain/control/arith/hard"] == 1.0
    # failures: the share of constrained runs of solved items, with its count and interval
    assert row["sustain/failures/reasoning"] == 0.25 and row["sustain/failures/reasoning_count"] == 1
    assert row["sustain/failures/reasoning_lo"] < 0.25 < row["sustain/failures/reasoning_hi"]
    assert row["sustain/failure_examples"]["_type"] == "table-file"


def test_missing_sbatch_warns_once_and_training_continues(tiny_model, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    out = tmp_path / "run"
    env = train_env(tmp_path, PATH=str(bin_dir))  # no sbatch anywhere on PATH
    proc = run_training("sustain.train.sft", "sft.yaml", tiny_model, out, [*SFT_FLAGS, "--eval_mode", "sbatch"], env)
    assert proc.stderr.count("warning: sbatch not found") == 1
    assert (out / "checkpoint-4").is_dir() and not list((out / "eval").glob("checkpoint-*/job.json"))


def test_lora_checkpoints_are_adapters_the_eval_can_load(tiny_model, tmp_path):
    out = tmp_path / "run"
    relative = os.path.relpath(tiny_model, ROOT)  # as a user would type it
    flags = [*SFT_FLAGS, "--use_peft", "--lora_r", "8", "--lora_alpha", "16", "--lora_target_modules", "q_proj", "v_proj",
             "--report_to", "none"]
    run_training("sustain.train.sft", "sft.yaml", Path(relative), out, flags, train_env(tmp_path))
    adapter = json.loads((out / "checkpoint-2" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model.resolve())  # loadable from any folder
    assert not (out / "checkpoint-2" / "model.safetensors").exists()
    assert_evaluated(out, [2, 4])
