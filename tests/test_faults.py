"""SIGKILL the eval, the training run and the report at seeded points, resume, and compare with uninterrupted runs.

Kills come two ways: by time (a seeded delay after the process has started working, then SIGKILL to
its whole process group) and at injected points (an audit hook SIGKILLs the process when it opens
its Nth file for writing, leaving that file empty: the worst moment for a non-atomic write). The
eval's kills at seeded record writes are in test_resume.py; here the eval is killed by time.
After every kill: no record file holds a duplicated key, and no half-written file stands under a
name that says "complete" (summary.json, report.json, a checkpoint-N with trainer_state.json).
After the resume: records and summaries equal the uninterrupted run's.

A full disk is a size-limited tmpfs mounted by the test (root); where mounting is not allowed, a
per-file size limit (RLIMIT_FSIZE, EFBIG) stands in for it.
"""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sustain.eval.records import RecordStore
from tests.conftest import ROOT

STAGES = ("baseline.jsonl", "constraints.jsonl", "constrained.jsonl", "control.jsonl")
EVAL_FLAGS = ["--tasks", "arith", "--limit", "8", "--k-max", "2", "--max-new-tokens", "32", "--batch-size", "2"]
SFT_FLAGS = ["--dataset_size", "64", "--per_device_train_batch_size", "8", "--max_steps", "8", "--save_steps", "1",
             "--logging_steps", "1", "--eval_mode", "inline", "--eval_limit", "4", "--eval_max_new_tokens", "24",
             "--eval_batch_size", "4", "--report_to", "none", "--save_total_limit", "10"]
SEED = 20260125
STEPS = 8  # --max_steps: a checkpoint (and its inline eval) at every step

# Runs a module as __main__ and SIGKILLs the process when it opens, for writing, the Nth file whose
# path contains KILL_AT_OPEN's pattern ("pattern:N"): that file is left as the open made it (created,
# emptied for "w"), with nothing written yet.
KILL_AT_OPEN = r"""
import os, runpy, signal, sys
pattern, nth = os.environ["KILL_AT_OPEN"].rsplit(":", 1)
opened = []
def hook(event, args):
    if event != "open" or args[0] is None or isinstance(args[0], int):
        return
    path, mode, flags = os.fsdecode(os.fspath(args[0])), args[1], args[2] or 0
    writing = any(c in (mode or "") for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
    if writing and pattern in path and not opened.count(None):
        opened.append(path)
        if len(opened) == int(nth):
            opened.append(None)  # the hook's own open below must not count
            with open(path, "ab"):  # the file being opened now exists ...
                pass
            if "w" in (mode or "") or flags & os.O_TRUNC:
                os.truncate(path, 0)  # ... and is empty, as the open about to happen would leave it
            os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def python_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SUSTAIN_KILL_AT_WRITE", "KILL_AT_OPEN")}
    # no progress bars: stderr then holds only messages (a terminal redraws and clears the bars anyway)
    env.update(TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled", TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               **extra)
    return env


class Launch:
    """A command in its own process group with its output in files (a pipe could fill and block it)."""

    def __init__(self, cmd: list[str], env: dict, log: Path, preexec_fn=None):
        self.log = log
        self.out, self.err = open(log.with_suffix(".out"), "w"), open(log.with_suffix(".err"), "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.out, stderr=self.err,
                                     start_new_session=True, preexec_fn=preexec_fn)
        self.started = time.monotonic()

    def wait_until(self, ready, timeout: float = 300.0) -> bool:
        """Poll `ready()` while the process runs; False if it ended first."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if ready():
                return True
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.proc.args} not ready after {timeout:.0f} s")
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group: the process and any helper it started
        except ProcessLookupError:
            pass

    def kill_after(self, delay: float) -> None:
        try:
            self.proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            self.kill()

    def finish(self, timeout: float = 600.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self.out.close()
        self.err.close()
        return code

    @property
    def stderr(self) -> str:
        return self.log.with_suffix(".err").read_text(errors="replace")


def check_store(path: Path) -> int:
    """A record file after a kill: loads cleanly, one line per key (no duplicate); its record count."""
    if not path.exists():
        return 0
    store = RecordStore(path)  # cuts a torn last line, as a resume does
    lines = [line for line in path.read_bytes().split(b"\n") if line]
    assert len(lines) == len(store), f"{path}: {len(lines)} lines for {len(store)} keys"
    return len(store)


def check_complete_json(path: Path) -> None:
    """A file whose name says "complete" is never partial."""
    if path.exists():
        json.loads(path.read_text())


def records(out: Path) -> dict:
    return {name: sorted(RecordStore(out / name), key=lambda r: (r["task"], r["item_id"], r["condition"]))
            for name in STAGES if (out / name).exists()}


def summary_without_paths(path: Path) -> dict:
    summary = json.loads(path.read_text())
    summary.pop("model", None)  # the checkpoint's path differs between runs
    return summary


# ---------------------------------------------------------------- eval


def eval_cmd(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sustain", "eval", "--model", str(model), "--out", str(out), *EVAL_FLAGS]


@pytest.fixture(scope="module")
def eval_reference(tiny_model, tmp_path_factory):
    """An uninterrupted eval, and how long its stages ran after run.json appeared."""
    out = tmp_path_factory.mktemp("eval_reference") / "run"
    launch = Launch(eval_cmd(tiny_model, out), python_env(out.parent), out.parent / "reference")
    launch.wait_until(lambda: (out / "run.json").exists())
    working_from = time.monotonic()
    assert launch.finish() == 0, launch.stderr[-3000:]
    return {"out": out, "work_s": time.monotonic() - working_from, "records": records(out)}


@pytest.mark.slow
def test_eval_killed_at_seeded_times_resumes_to_the_uninterrupted_records(tiny_model, eval_reference, tmp_path):
    rng = random.Random(SEED)
    out = tmp_path / "run"
    kills = []
    for attempt in range(20):
        launch = Launch(eval_cmd(tiny_model, out), python_env(tmp_path), tmp_path / f"attempt{attempt}")
        delay = None
        if len(kills) < 8 and launch.wait_until(lambda: (out / "run.json").exists()):
            delay = rng.uniform(0, 0.7 * eval_reference["work_s"])
            launch.kill_after(delay)
        code = launch.finish()
        if code == 0:
            break
        assert code == -signal.SIGKILL, launch.stderr[-3000:]
        kills.append((round(delay, 2), {name: check_store(out / name) for name in STAGES}))
        check_complete_json(out / "summary.json")
    else:
        pytest.fail(f"the resumed eval never finished: {kills}")
    print(f"eval: {len(kills)} kills survived (delay s, records when killed): {kills}")
    assert len(kills) >= 5, kills
    # the kills landed at different points of the run (record counts when each one died)
    assert len({tuple(counts.values()) for _, counts in kills}) >= 2, kills
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
        reason = "No space left on device" if disk.mode == "tmpfs" else "File too large"
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


# ---------------------------------------------------------------- training


# The training recipe of these tests (flags set the rest): their own, so the demo recipes stay free to change.
SFT_RECIPE = """\
dataset: arith
instruction_rate: 0.3
learning_rate: 1.0e-3
lr_scheduler_type: constant
max_length: 128
save_strategy: steps
seed: 0
eval_tasks: [arith]
eval_k_max: 1
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
    launch = Launch(sft_cmd(tiny_model, out), python_env(out.parent), out.parent / "reference")
    launch.wait_until(lambda: complete_checkpoints(out))
    first_checkpoint = time.monotonic()
    assert launch.finish() == 0, launch.stderr[-3000:]
    period = (time.monotonic() - first_checkpoint) / (STEPS - 1)  # per further checkpoint, its eval included
    return {"out": out, "period_s": period, "results": training_results(out)}


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
def test_training_killed_mid_save_mid_eval_and_at_seeded_times_resumes_to_the_uninterrupted_run(
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

    # by time: a seeded delay after each restart has saved one more checkpoint (lands in training, a save or an eval)
    for attempt in range(12):
        before = complete_checkpoints(out)
        launch = Launch(sft_cmd(tiny_model, out), env, tmp_path / f"attempt{attempt}")
        delay = None
        if len(kills) < 7 and launch.wait_until(lambda: complete_checkpoints(out) - before):
            delay = rng.uniform(0, 0.5 * training_reference["period_s"])
            launch.kill_after(delay)
        code = launch.finish()
        if code == 0:
            break
        assert code == -signal.SIGKILL, launch.stderr[-3000:]
        check_training_folder(out)
        kills.append(f"{delay:.2f} s after checkpoint {sorted(complete_checkpoints(out) - before)}")
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
    assert warnings == [
        f"warning: skipping {tmp_path / 'checkpoint-13'}: model.safetensors is truncated or corrupt (its save was interrupted); resuming from an earlier checkpoint",
        f"warning: skipping {tmp_path / 'checkpoint-12'}: trainer_state.json is truncated or corrupt (its save was interrupted); resuming from an earlier checkpoint",
        f"warning: skipping {tmp_path / 'checkpoint-11'}: no trainer_state.json (its save was interrupted); resuming from an earlier checkpoint",
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
def test_report_killed_at_seeded_times_and_file_opens_resumes_to_the_same_report(training_reference, tmp_path):
    from sustain.eval.cli import main

    inputs = training_reference["out"]
    reference = tmp_path / "reference"
    launch = Launch(report_cmd(inputs, reference), python_env(tmp_path), tmp_path / "reference")
    launch.wait_until(reference.exists)
    writing_from = time.monotonic() - launch.started  # before that: imports and reading the run folders
    assert launch.finish() == 0, launch.stderr[-3000:]
    took = time.monotonic() - launch.started
    written = sorted(p.name for p in reference.iterdir())
    assert "report.json" in written and "report.md" in written and len(written) >= 4
    expected = (reference / "report.json").read_text()

    rng = random.Random(SEED)
    kills = []
    upper = took
    for i in range(12):  # by time, while it writes its files; a run that ends first narrows the window
        if sum(code == -signal.SIGKILL for _, _, code, _ in kills) == 4:
            break
        out = tmp_path / f"timed{i}"
        launch = Launch(report_cmd(inputs, out), python_env(tmp_path), out.with_suffix(".log"))
        launch.kill_after(rng.uniform(min(0.9 * writing_from, 0.5 * upper), upper))
        code = launch.finish()
        if code == 0:
            upper = 0.9 * (time.monotonic() - launch.started)
        kills.append((f"{time.monotonic() - launch.started:.2f} s", out, code, listing(out)))
    for n in rng.sample(range(1, len(written) + 1), 4):  # at the open of its nth output file (temp files count)
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
    assert len(survived) == 8, kills
