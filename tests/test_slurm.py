"""The Slurm layer: recipe values for scripts, the comparison driver's job graph, and a REAL one-node
Slurm cluster running a comparison, an eval array, a failing training job and a requeued one.

Slurm facts the assertions rely on: a job whose dependency failed is cancelled (kill_invalid_depend)
and never runs; a requeued job is held ~2 minutes by its BeginTime, which the test lifts with
`scontrol update StartTime=now` so it restarts at once.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sustain.eval.errors import UserError
from conftest import ROOT, need_command
from slurm_cluster import running_cluster
from sustain.train.recipe_value import max_saves, parse_any, write

COMPARE = str(ROOT / "slurm" / "compare.sh")
DEMO = [ROOT / "recipes" / "demo" / f"{n}.yaml" for n in ("sft", "grpo", "grpo_constraints")]
# Tiny runs for a 2-core machine: sft leaves 2 checkpoints, the GRPO runs 1 each.
TINY = ["--set", "report_to=none", "--set", "eval.limit=8", "--set", "dataset_size=256",
        "--set", "max_steps=2", "--set", "save_steps=2", "--set", "sft:max_steps=4",
        "--set", "grpo_constraints:constraint_pool=16"]


def run(*cmd, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "SUSTAIN_PYTHON": sys.executable, **(env or {})})


def write_recipe(path: Path, base: Path, **changes) -> Path:
    """A copy of recipe `base` elsewhere, its shared eval block written in (its include is relative)."""
    from sustain.train.eval_block import read_block

    data = yaml.safe_load(base.read_text())
    data = {**data, "eval": read_block(data.get("eval"), base.parent, str(base)), **changes}
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------- recipe values (no cluster)


def test_the_trainer_is_told_by_the_recipe_keys(tmp_path):
    assert [parse_any(str(r))[0] for r in DEMO] == ["sft", "grpo", "grpo"]
    both = tmp_path / "evalonly.yaml"  # what the training callback writes for an eval job
    both.write_text("model_name_or_path: m\neval: {limit: 3}\n")
    with pytest.raises(UserError, match=r"both .* sft:.*evalonly.yaml"):
        parse_any(str(both))
    assert parse_any(f"grpo:{both}")[0] == "grpo"
    assert parse_any(str(both), need_kind=False)[1][0].eval.limit == 3


def test_write_applies_overrides_to_every_recipe_or_one_paradigm(tmp_path):
    lines = write(["max_steps=3", "save_steps=2", "grpo:num_generations=2", "eval.limit=9"],
                  [str(DEMO[0]), str(tmp_path / "sft"), str(DEMO[1]), str(tmp_path / "grpo")])
    assert lines == ["sft 2", "grpo 2"]  # ceil(3 / 2) checkpoints each
    sft = yaml.safe_load((tmp_path / "sft" / "recipe.yaml").read_text())
    grpo = yaml.safe_load((tmp_path / "grpo" / "recipe.yaml").read_text())
    assert sft["output_dir"] == str(tmp_path / "sft") and grpo["output_dir"] == str(tmp_path / "grpo")
    assert sft["max_steps"] == grpo["max_steps"] == 3
    # the shared eval file is written into each run's recipe, with the override on top
    assert sft["eval"] == grpo["eval"] == {**yaml.safe_load((ROOT / "recipes" / "demo" / "eval" / "sustain.yaml").read_text()), "limit": 9}
    assert grpo["num_generations"] == 2 and "num_generations" not in sft


def test_write_refuses_unknown_keys_and_evals_that_differ(tmp_path):
    with pytest.raises(UserError, match="unknown key 'bogus'"):
        write(["bogus=1"], [str(DEMO[0]), str(tmp_path / "sft")])
    assert not (tmp_path / "sft" / "recipe.yaml").exists()
    other = write_recipe(tmp_path / "other.yaml", DEMO[0], eval={"include": str(ROOT / "recipes" / "demo" / "eval" / "sustain.yaml"),
                                                                 "limit": 7})
    with pytest.raises(UserError, match="limit: 7"):
        write([], [str(DEMO[0]), str(tmp_path / "a"), str(other), str(tmp_path / "b")])


@pytest.mark.parametrize("max_steps, save_steps, limit, best, expected", [
    (20, 5, None, False, 4), (21, 5, None, False, 5), (20, 5, 2, False, 2), (20, 5, 2, True, 3), (-1, 5, None, False, 0),
])
def test_max_saves_sizes_the_eval_array(max_steps, save_steps, limit, best, expected):
    args = SimpleNamespace(save_strategy="steps", max_steps=max_steps, save_steps=save_steps,
                           save_total_limit=limit, load_best_model_at_end=best)
    assert max_saves(args) == expected


# ---------------------------------------------------------------- compare.sh without a cluster


def test_dry_run_prints_the_job_graph_with_the_cluster_options(tmp_path):
    env = {"SUSTAIN_PARTITION": "gpu", "SUSTAIN_ACCOUNT": "lab", "SUSTAIN_TIME": "2:00:00"}
    proc = run(COMPARE, "--dry-run", "--root", tmp_path / "cmp", "--base", "Qwen/Qwen2.5-1.5B-Instruct",
               "--nodes", "2", "--gpus-per-node", "8", "--accelerate-config", "recipes/accelerate/zero2.yaml",
               "--set", "max_steps=20", "--set", "save_steps=5", "--partial-report", *map(str, DEMO), env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "=$(sbatch " in line]
    assert len(lines) == 1 + 2 * len(DEMO) + 1  # base eval, train + eval array per paradigm, report
    assert all("--partition=gpu" in line and "--account=lab" in line for line in lines)
    trains = [line for line in lines if "train.slurm" in line]
    assert all("--nodes=2" in t and "--gpus-per-node=8" in t and "--time=2:00:00" in t
               and f"ACCELERATE_CONFIG={ROOT}/recipes/accelerate/zero2.yaml" in t for t in trains)
    evals = [line for line in lines if "--run" in line]
    assert [re.search(r"afterok:\$\{TRAIN_(\w+)\}", e).group(1) for e in evals] == ["SFT", "GRPO", "GRPO_CONSTRAINTS"]
    assert all("--array=0-3" in e and "--gpus=1" in e for e in evals)  # 20 steps / 5 = 4 checkpoints
    report = lines[-1]
    assert "report.slurm" in report and report.count("${") == 1 + 2 * len(DEMO)  # waits for every job
    assert "--dependency=afterany:" in report  # --partial-report: also after failures
    assert "base/eval/checkpoint-0" in lines[0] and "Qwen/Qwen2.5-1.5B-Instruct" in lines[0]
    assert not (tmp_path / "cmp").exists()  # a dry run writes nothing under --root


def fake_sbatch(tmp_path: Path) -> tuple[dict, Path]:
    """An sbatch that only records its calls: shows whether anything would have been queued."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch.calls"
    bin_dir.mkdir()
    script = bin_dir / "sbatch"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho 1\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls


def test_compare_refuses_mistakes_before_queueing_anything(tmp_path):
    env, calls = fake_sbatch(tmp_path)
    bad = write_recipe(tmp_path / "typo.yaml", DEMO[0], learning_rat=0.1)
    proc = run(COMPARE, "--root", tmp_path / "cmp", "--base", "m", DEMO[0], bad, env=env)
    assert proc.returncode == 2 and "unknown key 'learning_rat'" in proc.stderr and "learning_rate" in proc.stderr
    proc = run(COMPARE, "--root", tmp_path / "cmp", "--base", "m", "--gpus-per-node", "4", DEMO[0], env=env)
    assert proc.returncode == 2 and "--accelerate-config" in proc.stderr
    proc = run(COMPARE, "--root", tmp_path / "cmp", "--base", "m", DEMO[0], DEMO[0], env=env)
    assert proc.returncode == 2 and "two recipes are named sft" in proc.stderr
    assert not calls.exists()


# ---------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    for cmd, package in [("munged", "munge"), ("slurmctld", "slurmctld"), ("slurmd", "slurmd"),
                         ("sbatch", "slurm-client")]:
        need_command(cmd, package)
    with running_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def compare(slurm, root: Path, base: Path, *args) -> subprocess.CompletedProcess:
    return slurm.run(COMPARE, "--root", str(root), "--base", str(base), *map(str, args), check=False, timeout=900)


def status(slurm, root: Path) -> subprocess.CompletedProcess:
    return slurm.run(COMPARE, "--status", str(root), "--wait", check=False, timeout=1800)


def rows(status_out: str) -> dict[tuple[str, str], str]:
    """(role, paradigm) -> STATE from the status table."""
    out = {}
    for line in status_out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[0] in ("base", "train", "eval", "report"):
            out[(parts[0], parts[1])] = parts[3]
    return out


@pytest.fixture(scope="module")
def comparison(slurm, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    submitted = compare(slurm, root, tiny_model, *TINY, *DEMO)
    assert submitted.returncode == 0, submitted.stderr
    done = status(slurm, root)
    return SimpleNamespace(root=root, base=tiny_model, submitted=submitted, status=done)


@pytest.mark.slurm
@pytest.mark.slow
def test_compare_runs_every_paradigm_to_the_report(comparison):
    root, done = comparison.root, comparison.status
    assert done.returncode == 0, done.stdout + done.stderr
    names = ["sft", "grpo", "grpo_constraints"]
    assert set(rows(done.stdout).values()) == {"COMPLETED"}
    assert len(rows(done.stdout)) == 2 + 2 * len(names)
    for name in names:
        info = json.loads((root / name / "run_info.json").read_text())
        assert info["paradigm"] == name and info["base_model"] == str(Path(comparison.base).resolve())
        steps = sorted(int(p.parent.name.split("-")[1]) for p in (root / name / "eval").glob("checkpoint-*/summary.json"))
        assert steps == ([2, 4] if name == "sft" else [2])
    assert (root / "base" / "eval" / "checkpoint-0" / "summary.json").is_file()
    report = json.loads((root / "report" / "report.json").read_text())
    assert set(report["paradigms"]) == set(names) and report["base"] is not None
    md = (root / "report" / "report.md").read_text()
    assert all(f"| {name} |" in md for name in names) and "| base model |" in md


@pytest.mark.slurm
@pytest.mark.slow
def test_eval_array_skips_checkpoints_already_done(slurm, comparison, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    for ckpt in ("checkpoint-2", "checkpoint-4"):
        shutil.copytree(comparison.root / "sft" / ckpt, run_dir / ckpt)
    done = run_dir / "eval" / "checkpoint-2" / "summary.json"
    done.parent.mkdir(parents=True)
    done.write_text('{"sentinel": "computed before"}')
    before = done.stat().st_mtime_ns
    job = slurm.sbatch("--array=0-2", f"--output={tmp_path}/eval-%a.out", str(ROOT / "slurm" / "eval.slurm"),
                       "--run", str(run_dir), "--recipe", str(comparison.root / "sft" / "recipe.yaml"))
    slurm.wait([job])
    assert slurm.states(job) == {"COMPLETED"}
    assert done.read_text() == '{"sentinel": "computed before"}' and done.stat().st_mtime_ns == before
    computed = json.loads((run_dir / "eval" / "checkpoint-4" / "summary.json").read_text())
    assert computed["accuracy"]["n"] == 8  # the eval block's limit from the recipe
    assert "already done" in (tmp_path / "eval-0.out").read_text()
    assert "nothing to do: index 2" in (tmp_path / "eval-2.out").read_text()


@pytest.mark.slurm
@pytest.mark.slow
def test_failed_training_cancels_its_evals_and_the_report(slurm, tiny_model, tmp_path):
    broken = write_recipe(tmp_path / "broken.yaml", DEMO[0], dataset=str(tmp_path / "missing.jsonl"))
    root = tmp_path / "cmp"
    submitted = compare(slurm, root, tiny_model, *TINY, broken)
    assert submitted.returncode == 0, submitted.stderr  # a missing data file is only found by the job
    done = status(slurm, root)
    assert done.returncode == 1 and "comparison FAILED" in done.stdout
    states = rows(done.stdout)
    assert states[("train", "broken")] == "FAILED"
    assert states[("eval", "broken")] == states[("report", "report")] == "CANCELLED"
    assert states[("base", "base")] == "COMPLETED"
    assert not (root / "report").exists()
    logs = sorted(p.name for p in (root / "logs").iterdir())
    assert not [n for n in logs if n.startswith(("eval-broken", "report"))]  # they never ran
    train_log = (root / "logs" / next(n for n in logs if n.startswith("train-broken"))).read_text()
    assert "missing.jsonl" in train_log and "training exited with status" in train_log


def checkpoint_steps(output_dir: Path) -> list[int]:
    """Steps of the checkpoints that are completely written (trainer_state.json comes last)."""
    return sorted(int(p.parent.name.split("-")[1]) for p in output_dir.glob("checkpoint-*/trainer_state.json"))


@pytest.mark.slurm
@pytest.mark.slow
def test_requeued_training_resumes_from_its_last_checkpoint(slurm, tiny_model, tmp_path):
    out = tmp_path / "run"
    write(["report_to=none", "eval_mode=none", "dataset_size=256", "per_device_train_batch_size=8",
           "max_steps=40", "save_steps=5", "save_total_limit=null", f"model_name_or_path={tiny_model}"],
          [str(DEMO[0]), str(out)])
    log = tmp_path / "train.out"
    job = slurm.sbatch(f"--output={log}", str(ROOT / "slurm" / "train.slurm"), str(out / "recipe.yaml"))
    deadline = time.monotonic() + 1800  # a hang guard: the loop ends with the job's first checkpoint
    while not checkpoint_steps(out):
        assert slurm.states(job) & {"PENDING", "RUNNING"}, log.read_text() if log.exists() else "no log"
        assert time.monotonic() < deadline, "no checkpoint after 1800 s"
        time.sleep(0.2)
    # What the time-limit warning does (--signal=B:USR1@120): USR1 to the batch script, which requeues.
    slurm.run("scancel", "--batch", "--signal=USR1", job)
    first = out / "checkpoint-5" / "model.safetensors"
    written = first.stat().st_mtime_ns
    deadline = time.monotonic() + 600
    while "Restarts=1" not in slurm.run("scontrol", "show", "job", job).stdout:
        assert time.monotonic() < deadline, "the job was not requeued"
        time.sleep(0.2)
    # Slurm holds a requeued job ~2 min; starting it in the same second as the kill is refused
    # ("Job credential revoked", second granularity), so lift the hold 2 s after the kill.
    time.sleep(2)
    slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    slurm.wait([job])

    text = log.read_text()
    assert slurm.states(job) == {"COMPLETED"}, text[-3000:]
    assert "USR1: time limit near or preemption: requeueing" in text and "(restart 1)" in text
    resumed = re.search(r"resuming from .*checkpoint-(\d+)", text)
    assert resumed and int(resumed.group(1)) >= 5, text[-3000:]
    final = json.loads((out / "checkpoint-40" / "trainer_state.json").read_text())
    assert final["global_step"] == 40
    assert first.stat().st_mtime_ns == written  # not trained again from step 0


@pytest.mark.slurm
@pytest.mark.slow
def test_accelerate_path_launches_one_process_per_gpu_through_srun(slurm, tiny_model, tmp_path):
    """The multi-node launch line (srun, accelerate --num_machines/--machine_rank/--main_process_ip) on
    one node: two DDP processes on the CPU stand in for two GPUs."""
    out = tmp_path / "run"
    write(["report_to=none", "eval_mode=none", "dataset_size=256", "per_device_train_batch_size=4", "max_steps=3",
           "save_steps=3", f"model_name_or_path={tiny_model}"], [str(DEMO[0]), str(out)])
    env = {**slurm.env, "ACCELERATE_CONFIG": "recipes/accelerate/ddp.yaml", "SUSTAIN_GPUS_PER_NODE": "2"}
    log = tmp_path / "train.out"
    job = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=2", f"--output={log}",
                          str(ROOT / "slurm" / "train.slurm"), str(out / "recipe.yaml")],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    slurm.wait([job])
    assert slurm.states(job) == {"COMPLETED"}, log.read_text()[-3000:]
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    # 3 steps of 4 rows on each of 2 processes cover 24 of the 256 rows: twice one process's share
    assert state["epoch"] == pytest.approx(3 * 4 * 2 / 256)


@pytest.mark.slurm
def test_cluster_stop_leaves_no_process_behind(tmp_path):
    for cmd, package in [("munged", "munge"), ("slurmctld", "slurmctld"), ("sbatch", "slurm-client")]:
        need_command(cmd, package)
    with running_cluster(tmp_path / "c") as cluster:
        job = cluster.sbatch(f"--output={tmp_path}/sleep.out", "--wrap", "sleep 300")
        deadline = time.monotonic() + 600
        while cluster.states(job) != {"RUNNING"}:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert cluster.leftover_pids()  # the daemons and the job are found by their marks
    assert cluster.leftover_pids() == []
