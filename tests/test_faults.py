"""SIGKILL the eval, the training run and the report at seeded points, resume, and compare with uninterrupted runs.

Every kill point comes from progress, never from a timer (a loaded machine outruns a timer: a kill
"0.7 s in" may land before any work or after the end). An audit hook SIGKILLs the process when it
opens its Nth file for writing under the output folder, leaving that file as the open made it (empty
for "w"): the worst moment for a non-atomic write. N is seeded; an uninterrupted run under the same
hook logs every such open, which gives the number of kill points a run has. A kill between two opens
loses nothing more than a kill at the next open (nothing of the work since is on disk), so these
points stand for every moment of the run. The eval's kills in the middle of a record write are in
test_resume.py.
After every kill: no record file holds a duplicated key, and no half-written file stands under a
name that says "complete" (summary.json, report.json, a checkpoint-N with trainer_state.json).
After the resume: records and summaries equal the uninterrupted run's.

A full disk is a size-limited tmpfs mounted by the test (root); where mounting is not allowed, a
per-file size limit (RLIMIT_FSIZE, EFBIG) stands in for it.
"""
from __future__ import annotations

import random
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kill_points import (KILL_AT_OPEN, SEED, STAGES, Launch, check_complete_json, check_store, logged_run, python_env,
                         records, summary_without_paths)

EVAL_FLAGS = ["--tasks", "arith", "--limit", "8", "--k-max", "2", "--max-new-tokens", "32", "--batch-size", "4"]


# ---------------------------------------------------------------- eval


def eval_cmd(model: Path, out: Path, hook: bool = False) -> list[str]:
    entry = ["-c", KILL_AT_OPEN] if hook else ["-m"]
    return [sys.executable, *entry, "sustain", "eval", "--model", str(model), "--out", str(out), *EVAL_FLAGS]


@pytest.fixture(scope="module")
def eval_reference(tiny_model, tmp_path_factory):
    """An uninterrupted eval and its writes (run.json, one open per record batch, summary.json)."""
    out = tmp_path_factory.mktemp("eval_reference") / "run"
    writes = logged_run(eval_cmd(tiny_model, out, hook=True), out, out.parent)
    return {"out": out, "writes": writes, "records": records(out)}


@pytest.mark.slow
def test_eval_killed_at_seeded_progress_points_resumes_to_the_uninterrupted_records(tiny_model, eval_reference, tmp_path):
    rng = random.Random(SEED)
    out = tmp_path / "run"
    kills = []
    # A (re)started eval first opens its lock file and rewrites run.json, then appends the batches not yet
    # on disk: dying at its 4th to 6th write keeps 1 to 3 more batches, so every attempt gets further.
    for attempt in range(len(eval_reference["writes"]) + 1):
        nth = rng.randint(4, 6)
        launch = Launch(eval_cmd(tiny_model, out, hook=True), python_env(tmp_path, KILL_AT_OPEN=f"{out}/:{nth}"),
                        tmp_path / f"attempt{attempt}")
        code = launch.finish()
        if code == 0:
            break
        assert code == -signal.SIGKILL, launch.stderr[-3000:]
        kills.append((nth, {name: check_store(out / name) for name in STAGES}))
        check_complete_json(out / "summary.json")
    else:
        pytest.fail(f"the resumed eval never finished: {kills}")
    print(f"eval: {len(kills)} kills survived (nth write, records when killed): {kills}")
    assert len(kills) >= 4, (kills, eval_reference["writes"])
    # the kills landed in every stage (by the record counts when each one died); control and
    # constrained records share their batches, so they are one stage here
    stages = [("baseline.jsonl",), ("constraints.jsonl",), ("control.jsonl", "constrained.jsonl")]
    for i, names in enumerate(stages):
        assert any(any(counts[n] for n in names) and not any(counts[later] for s in stages[i + 1:] for later in s)
                   for _, counts in kills), (names, kills)
    assert records(out) == eval_reference["records"]
    assert summary_without_paths(out / "summary.json") == summary_without_paths(eval_reference["out"] / "summary.json")


# ---------------------------------------------------------------- full disk


class SmallDisk:
    """A folder that fills up: a tmpfs of `size` bytes, or (no mount allowed) a per-file size limit."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, size
        path.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True) if shutil.which("mount") else None
        self.mode = "tmpfs" if mounted is not None and mounted.returncode == 0 else "rlimit_fsize"

    def limit(self):
        """preexec_fn for the writer's process (only the file-size mode needs one)."""
        if self.mode == "rlimit_fsize":
            return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, self.size))
        return None

    def grow(self) -> None:
        if self.mode == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=64m", str(self.path)], check=True)

    def close(self) -> None:
        if self.mode == "tmpfs":
            subprocess.run(["umount", str(self.path)], check=False)


@pytest.mark.slow
def test_full_disk_is_one_line_and_a_rerun_with_space_completes_the_same_records(tiny_model, eval_reference, tmp_path):
    ref = eval_reference["out"]
    page = 4096
    pages = lambda p: -(-p.stat().st_size // page)
    # room for run.json and the baseline, not for the constraint records: the disk fills mid-run
    disk = SmallDisk(tmp_path / "disk", page * (pages(ref / "run.json") + pages(ref / "baseline.jsonl") + 1))
    if disk.mode == "rlimit_fsize":
        disk.size = max((ref / n).stat().st_size for n in ("run.json", "baseline.jsonl")) + 200
    try:
        out = disk.path / "run"
        launch = Launch(eval_cmd(tiny_model, out), python_env(tmp_path), tmp_path / "full", preexec_fn=disk.limit())
        assert launch.finish() == 2, launch.stderr[-3000:]
        lines = [line for line in launch.stderr.splitlines() if line.strip()]
        reason = "no space left on the device" if disk.mode == "tmpfs" else "File too large"
        assert len(lines) == 1 and reason in lines[0] and "(fix: free disk space or choose another --out)" in lines[0], lines
        assert "Traceback" not in launch.stderr
        for name in STAGES:
            check_store(out / name)  # no torn line left behind
        assert records(out)["baseline.jsonl"] == eval_reference["records"]["baseline.jsonl"]
        assert not (out / "summary.json").exists()
        disk.grow()
        rerun = Launch(eval_cmd(tiny_model, out), python_env(tmp_path), tmp_path / "rerun")
        assert rerun.finish() == 0, rerun.stderr[-3000:]
        assert records(out) == eval_reference["records"]
        assert summary_without_paths(out / "summary.json") == summary_without_paths(ref / "summary.json")
    finally:
        disk.close()
    print(f"full disk simulated with: {disk.mode}")
