"""The SFT recipe with two processes (torchrun, gloo on CPU): world size 2, one save and one eval per checkpoint."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from sustain.eval.config import EvalConfig, from_dict
from sustain.eval.pipeline import run_eval
from test_shards import jsonl_files
from test_train_sft import SFT_FLAGS, assert_evaluated, run_training, sustain_rows, train_env
from wandb_offline import run_dirs


@pytest.mark.slow
def test_sft_with_two_processes(tiny_model, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    assert torchrun.exists() or shutil.which("torchrun"), "torchrun ships with torch"
    out = tmp_path / "run"
    # on a CPU machine `accelerate launch --cpu --num_processes 2` starts one process; torchrun starts two
    launcher = [str(torchrun), "--nproc_per_node", "2", "--master_port", "29517"]
    run_training("sustain.train.sft", "sft.yaml", tiny_model, out, SFT_FLAGS, train_env(tmp_path), launcher=launcher)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    # 64 rows, 8 per process: with 2 processes 4 steps are one full epoch (with 1 they would be half)
    assert state["log_history"][-1]["epoch"] == pytest.approx(1.0)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert_evaluated(out, [2, 4])
    assert len(run_dirs(tmp_path / "wandb_dir")) == 1  # only rank 0 reports to W&B
    assert sorted(sustain_rows(tmp_path / "wandb_dir")) == [2, 4]
    # the inline eval ran on both ranks (a share each) and the merged records equal a one-rank eval
    evaluated = out / "eval" / "checkpoint-4"
    shares = [len((evaluated / "shards" / f"rank-{r}" / "baseline.jsonl").read_text().splitlines()) for r in (0, 1)]
    assert shares == [4, 4]
    cfg = json.loads((evaluated / "run.json").read_text())["config"]
    run_eval(from_dict(EvalConfig, {**cfg, "out": str(tmp_path / "one-rank")}, "run.json"))
    assert jsonl_files(evaluated) == jsonl_files(tmp_path / "one-rank")
