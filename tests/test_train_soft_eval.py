"""The per-checkpoint eval is `sustain eval`: soft constraints, with their endpoint, run during
training, inline and as the sbatch eval job (the scripted OpenAI-compatible endpoint stands in for
the LLM that writes and judges them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scripted_llm import ScriptedLLM
from test_train_sft import ROOT, SFT_FLAGS, run_training, train_env

ONE_CHECKPOINT = ["--max_steps", "2", "--save_steps", "2"]


def soft_flags(url: str) -> list[str]:
    return ["--eval.families", "hard,soft", "--eval.soft_model", "scripted-judge", "--eval.soft_base_url", url,
            "--eval.request_timeout_s", "1", "--eval.request_retries", "0"]


def assert_soft_scored(folder) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    cells = next(iter(summary["sustain"]["headline"].values()))
    assert set(cells) == {"hard", "soft"} and cells["soft"]["n"] > 0
    soft = [json.loads(line) for line in (folder / "constrained.jsonl").read_text().splitlines()]
    assert [r for r in soft if r["family"] == "soft"], "no constrained run with a soft constraint"


@pytest.fixture
def llm():
    server = ScriptedLLM(slow_s=1.5)
    yield server
    server.close()


@pytest.mark.slow
def test_inline_checkpoint_eval_runs_soft_constraints(tiny_model, tmp_path, llm):
    out = tmp_path / "run"
    run_training("sustain.train.sft", "sft.yaml", tiny_model, out,
                 [*SFT_FLAGS, *ONE_CHECKPOINT, "--report_to", "none", *soft_flags(llm.url)], train_env(tmp_path))
    assert_soft_scored(out / "eval" / "checkpoint-2")
    assert llm.requests > 0


@pytest.mark.slow
def test_sbatch_checkpoint_eval_job_runs_soft_constraints(tiny_model, tmp_path, llm):
    """Training submits the job (a stand-in sbatch records it); the job is then run as Slurm would."""
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.log"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> "{log}"\necho 7\n')
    (bin_dir / "sbatch").chmod(0o755)
    out = tmp_path / "run"
    env = train_env(tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    run_training("sustain.train.sft", "sft.yaml", tiny_model, out,
                 [*SFT_FLAGS, *ONE_CHECKPOINT, "--report_to", "none", "--eval_mode", "sbatch", *soft_flags(llm.url)], env)
    (submitted,) = log.read_text().splitlines()
    script, *job_args = submitted.split()[1:]  # after --parsable
    assert not (out / "eval" / "checkpoint-2" / "summary.json").exists() and llm.requests == 0
    job = subprocess.run(["bash", script, *job_args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**env, "SUSTAIN_PYTHON": sys.executable, "SUSTAIN_HOME": str(ROOT)})
    assert job.returncode == 0, job.stderr[-3000:]
    assert_soft_scored(out / "eval" / "checkpoint-2")
