"""`sustain demo`: every stage end to end on --quick, a rerun that redoes nothing, and the demo's design."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sustain.train.demo as demo
from sustain.eval.tasks.arith import INSTRUCTIONS

ROOT = Path(__file__).resolve().parents[1]
NAMES = [p.name for p in demo.PARADIGMS]


def run_demo(out: Path, cache_root: Path, wandb_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(SUSTAIN_CACHE_DIR=str(cache_root), WANDB_DIR=str(wandb_dir), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-m", "sustain", "demo", "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def written_files(out: Path) -> dict[str, int]:
    """Every record, summary and checkpoint file of the run (not the report, which is rebuilt): path -> mtime."""
    files = [p for p in out.rglob("*") if p.is_file() and "report" not in p.relative_to(out).parts
             and "wandb" not in p.relative_to(out).parts]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_a_rerun_redoes_nothing(tiny_model, tmp_path):
    out, wandb_dir = tmp_path / "demo", tmp_path / "wandb_dir"
    cache_root = tiny_model.parent.parent  # --quick starts from the suite's cached tiny model: no rebuild
    run_demo(out, cache_root, wandb_dir)

    report = json.loads((out / "report" / "report.json").read_text())
    assert sorted(report["paradigms"]) == sorted(NAMES)
    assert report["base"] is not None and report["base"]["step"] == 0
    for name in NAMES:
        steps = [c["step"] for c in report["paradigms"][name]["checkpoints"] if c["status"] == "done"]
        assert steps[0] == 0 and len(steps) >= 3, (name, steps)  # the base model + >= 2 trained checkpoints
        info = json.loads((out / name / "run_info.json").read_text())
        assert info["base_model"] == str(tiny_model)
        assert (out / name / "config.json").exists()  # the final model was saved
    md = (out / "report" / "report.md").read_text()
    assert all(f"| {name} |" in md for name in ["base model", *NAMES])
    assert "What it does not show" in md
    assert report["plots"]["cell/arith/hard"] and all((out / "report" / f).is_file() for f in report["plots"].values())
    assert list((wandb_dir / "wandb").glob("offline-run-*")), "W&B runs are written offline by default"

    before = written_files(out)
    proc = run_demo(out, cache_root, wandb_dir)
    assert written_files(out) == before  # no checkpoint trained or evaluated again
    said = " ".join(proc.stderr.split())  # the console wraps long lines
    assert all(f"{name}: already trained and evaluated" in said for name in NAMES)
    assert "base eval: already evaluated" in said
    assert (out / "report" / "report.md").exists()

    # killed after its last checkpoint was saved, before that checkpoint's eval and the final save
    last = max((out / "sft").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])).name
    run_id = json.loads((out / "sft" / "eval" / "wandb_run.json").read_text())["id"]
    shutil.rmtree(out / "sft" / "eval" / last)
    (out / "sft" / "config.json").unlink()
    run_demo(out, cache_root, wandb_dir)
    assert (out / "sft" / "eval" / last / "summary.json").exists() and (out / "sft" / "config.json").exists()
    after = written_files(out)
    untouched = [f for f in before if f.startswith(("base/", "grpo", "sft/eval/checkpoint-"))
                 and not f.startswith(f"sft/eval/{last}/")]
    assert untouched and [f for f in untouched if after[f] != before[f]] == []
    assert json.loads((out / "sft" / "eval" / "wandb_run.json").read_text())["id"] == run_id  # same W&B run, resumed


def test_every_paradigm_runs_the_same_eval():
    parsed = {p.name: demo.parse(p, Path("base-model"), Path("out"), quick=False) for p in demo.PARADIGMS}
    demo.check_same_eval(parsed)
    quick = {p.name: demo.parse(p, Path("base-model"), Path("out"), quick=True) for p in demo.PARADIGMS}
    demo.check_same_eval(quick)


def test_every_paradigm_trains_with_the_same_optimiser_rate_steps_and_batch():
    """The demo compares paradigms, not tunings (README): one optimiser, learning rate, schedule, step
    count and number of sequences per step; a --seed reaches every paradigm."""
    parsed = {p.name: demo.parse(p, Path("base-model"), Path("out"), quick=False, extra=("--seed", "7"))
              for p in demo.PARADIGMS}
    same = {name: (t.optim, t.learning_rate, t.lr_scheduler_type, t.max_steps, t.per_device_train_batch_size, t.seed)
            for name, (_, t, _) in parsed.items()}
    assert len(set(same.values())) == 1, same
    assert next(iter(same.values()))[-1] == 7


def test_demo_base_leaves_instruction_types_unseen():
    seen = set(demo.DEMO_BASE["instruction_ids"])
    assert seen < set(INSTRUCTIONS)  # a strict subset: its robustness at step 0 is partial by design
    assert 0 < demo.DEMO_BASE["instruction_rate"] < 1


def test_a_resumed_paradigm_does_not_hand_its_wandb_run_to_the_next(monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.setenv("WANDB_RESUME", "never")
    with demo.restored_environ("WANDB_RUN_ID", "WANDB_RESUME"):
        os.environ["WANDB_RUN_ID"] = "sft-run"  # what sustain.train.callbacks.resume_wandb_run does on a restart
        os.environ["WANDB_RESUME"] = "allow"
    assert "WANDB_RUN_ID" not in os.environ and os.environ["WANDB_RESUME"] == "never"


def test_each_demo_in_one_process_logs_to_its_own_folder(monkeypatch, tmp_path):
    """bench_demo_seeds runs several demos in one process: WANDB_DIR must not stay at the first one."""
    monkeypatch.delenv("WANDB_DIR", raising=False)
    seen = []
    monkeypatch.setattr(demo, "_run_demo", lambda out, quick, extra: seen.append(os.environ["WANDB_DIR"]))
    demo.run_demo(tmp_path / "seed-0", seed=0)
    demo.run_demo(tmp_path / "seed-1", seed=1)
    assert seen == [str(tmp_path / "seed-0"), str(tmp_path / "seed-1")] and "WANDB_DIR" not in os.environ
