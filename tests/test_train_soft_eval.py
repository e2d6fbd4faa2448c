"""The per-checkpoint eval is `sustain eval`: soft constraints, with their endpoint, run during
training, inline and as the sbatch eval job (the scripted OpenAI-compatible endpoint stands in for
the LLM that writes and judges them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from scripted_llm import ScriptedLLM
from test_train_sft import ROOT, SFT_FLAGS, run_training, train_env

ONE_CHECKPOINT = ["--max_steps", "2", "--save_steps", "2"]
# records its arguments and answers as `sbatch --parsable` does on a federated cluster: "id;cluster"
FAKE_SBATCH = """#!/bin/sh
echo "$@" >> "{log}"
echo "4242;cluster"
"""


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
def test_sbatch_mode_submits_each_checkpoint_once_and_the_job_runs_soft_constraints(tiny_model, tmp_path, llm):
    """Training submits one job per checkpoint without waiting (a stand-in sbatch records them); one
    job is then run as Slurm would, with the effective settings (CLI overrides included)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.log"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(log=log))
    (bin_dir / "sbatch").chmod(0o755)
    out = tmp_path / "run"
    env = train_env(tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    run_training("sustain.train.sft", "sft.yaml", tiny_model, out,
                 [*SFT_FLAGS, "--report_to", "none", "--eval_mode", "sbatch", *soft_flags(llm.url)], env)
    evals = [out / "eval" / f"checkpoint-{s}" for s in (2, 4)]
    calls = log.read_text().splitlines()
    assert calls == [f"--parsable slurm/eval.slurm {out / e.name} {e} {e / 'eval_recipe.yaml'}" for e in evals]
    for e in evals:
        settings = yaml.safe_load((e / "eval_recipe.yaml").read_text())["eval"]  # the eval block only
        assert settings["limit"] == 8 and settings["families"] == ["hard", "soft"]
        assert "model" not in settings and "out" not in settings
        assert json.loads((e / "job.json").read_text())["job_id"] == "4242"  # "id;cluster" from --parsable
        assert not (e / "summary.json").exists()  # nothing ran inline
    assert llm.requests == 0
    script, *job_args = calls[0].split()[1:]  # after --parsable
    job = subprocess.run(["bash", script, *job_args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**env, "SUSTAIN_PYTHON": sys.executable, "SUSTAIN_HOME": str(ROOT)})
    assert job.returncode == 0, job.stderr[-3000:]
    assert_soft_scored(evals[0])
