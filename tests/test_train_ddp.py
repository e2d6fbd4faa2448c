"""The SFT recipe with two processes (torchrun, gloo on CPU): world size 2, one save and one eval per checkpoint."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

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
