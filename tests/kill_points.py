"""Kill points for the fault tests (test_faults*.py): a process is SIGKILLed when it opens its Nth file for
writing under its output folder, never after a delay."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import ROOT

from sustain.eval.records import RecordStore

STAGES = ("baseline.jsonl", "constraints.jsonl", "constrained.jsonl", "control.jsonl")
SEED = 20260125

# Runs a module as __main__ and SIGKILLs the process when it opens, for writing, the Nth file whose
# path contains KILL_AT_OPEN's pattern ("pattern:N"): that file is left as the open made it (created,
# emptied for "w"), with nothing written yet. N = 0 never kills; KILL_AT_OPEN_LOG (a file outside the
# pattern) receives one line per such open.
KILL_AT_OPEN = r"""
import os, runpy, signal, sys
pattern, nth = os.environ["KILL_AT_OPEN"].rsplit(":", 1)
log = os.environ.get("KILL_AT_OPEN_LOG")
opened = []
def hook(event, args):
    if event != "open" or args[0] is None or isinstance(args[0], int):
        return
    path, mode, flags = os.fsdecode(os.fspath(args[0])), args[1], args[2] or 0
    writing = any(c in (mode or "") for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
    if writing and pattern in path and not opened.count(None):
        opened.append(path)
        if log:
            with open(log, "a") as fh:
                fh.write(path + "\n")
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
    env = {k: v for k, v in os.environ.items() if k not in ("SUSTAIN_KILL_AT_WRITE", "KILL_AT_OPEN", "KILL_AT_OPEN_LOG")}
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

    def finish(self, timeout: float = 3600.0) -> int:
        """Its exit code; the timeout only guards against a hang (no result depends on it)."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.out.close()
            self.err.close()

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


def logged_run(cmd, out: Path, folder: Path) -> list[str]:
    """Run `cmd` (built with hook=True) uninterrupted; the files it opened for writing under `out`, in order."""
    log = folder / f"{out.name}.writes"
    launch = Launch(cmd, python_env(folder, KILL_AT_OPEN=f"{out}/:0", KILL_AT_OPEN_LOG=str(log)), folder / out.name)
    assert launch.finish() == 0, launch.stderr[-3000:]
    return log.read_text().splitlines()
