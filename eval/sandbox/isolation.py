"""How a sandbox worker is launched, and which isolation a run gets: never a weaker one by surprise.

Settings (EvalConfig.sandbox, `--sandbox`): "auto" and "bwrap" mean bubblewrap; "unshare" is an
explicit opt-in for machines without bubblewrap. There is no other mode: both give the program the
same view of the machine (view.py: the interpreter, its standard library and system libraries,
read-only; private empty /tmp, /var/tmp, /dev/shm and HOME; no site-packages of any interpreter, no
home folders or project tree), no network (own network namespace: no loopback, no abstract Unix
sockets; no pathname socket is visible), own pid, ipc and uts namespaces, a uid that owns nothing
of the user's (a root evaluator gives each worker a fresh unused uid; otherwise the user's own uid
inside a user namespace, over a file system that holds nothing of theirs), no capabilities, no new
user namespaces, and the worker as pid 1 of its pid namespace, so every process a program starts
dies with one kill. When a mode cannot be built here the run stops before it starts, naming the fix.

bwrap:   bubblewrap builds the view (a reviewed, setuid-free tool).
unshare: util-linux `unshare` makes the namespaces and mount_view.py (this project's code) builds
         the same view; less reviewed than bubblewrap, which is why it must be named.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sustain.eval.errors import UserError
from sustain.eval.sandbox import view

log = logging.getLogger(__name__)

MODES = ("bwrap", "unshare")
SETTINGS = ("auto", *MODES)
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": view.HOME}
FIRST_UID, LAST_UID = 61000, 125000  # a root evaluator runs each worker as a fresh uid from this range
NAMESPACES = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
# What `--sandbox unshare` gives up compared with bubblewrap, printed when it is chosen.
WEAKER = {
    "unshare": ("the same namespaces, file-system view and limits as bubblewrap, but built by this project's own "
                "mount code (eval/sandbox/mount_view.py), which has had far less review than bubblewrap"),
}
_warned: set[str] = set()


def resolve_mode(requested: str = "auto") -> str:
    """The isolation mode for this run; a one-line UserError when it cannot run here."""
    if requested not in SETTINGS:
        raise UserError(f"unknown sandbox setting {requested!r}", f"use one of: {', '.join(SETTINGS)}")
    mode = "bwrap" if requested == "auto" else requested
    problem = why_not(mode)
    if problem and mode == "bwrap":
        other = "; or accept a weaker sandbox with --sandbox unshare" if not why_not("unshare") else ""
        raise UserError(f"the code sandbox needs bubblewrap, which cannot run here ({problem})",
                        f"apt-get install bubblewrap{other}")
    if problem:
        raise UserError(f"sandbox {mode!r} cannot run here ({problem})", "apt-get install bubblewrap and use --sandbox auto")
    if mode in WEAKER and mode not in _warned:
        _warned.add(mode)
        print(f"sustain: warning: sandbox {mode!r}: {WEAKER[mode]}", file=sys.stderr)
    return mode


@functools.cache
def why_not(mode: str) -> str | None:
    """None when this mode can start a sandboxed interpreter here, else why not (a probe, once per process)."""
    tool = {"bwrap": "bwrap", "unshare": "unshare"}[mode]
    if not shutil.which(tool):
        return f"{tool} is not installed"
    python = sandbox_python()
    folder = tempfile.mkdtemp(prefix="sustain-sandbox-probe-")
    try:
        uid = FIRST_UID if os.geteuid() == 0 else None
        check = "import os, _ctypes, select; print(os.getuid(), os.getpid(), sorted(os.listdir('/tmp')))"
        command = wrap(mode, [python, "-I", "-S", "-c", check], uid=uid, tmp_bytes=1 << 20, root_dir=folder)
        done = subprocess.run(command, env=CLEAN_ENV, capture_output=True, text=True, timeout=60, cwd="/")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    expected = f"{uid if uid is not None and mode == 'unshare' else os.getuid() if uid is None else 0} 1 []"
    if done.returncode != 0 or done.stdout.strip() != expected:
        last = (done.stderr.strip().splitlines() or [done.stdout.strip() or f"exit code {done.returncode}"])[-1]
        return last[:200]
    return None


def wrap(mode: str, command: list[str], *, uid: int | None, tmp_bytes: int, root_dir: str) -> list[str]:
    """`command` (an interpreter and its arguments) run as pid 1 of a sandbox built by this mode.

    uid: the worker's uid when the evaluator is root (bwrap: the worker drops to it itself, first
    thing; unshare: the set-up drops before starting it); None otherwise.
    root_dir: an empty folder of the evaluator's (unshare mounts the new root there).
    """
    ops = view.plan(command[0], tmp_bytes)
    if mode == "bwrap":
        user = [] if uid is not None else ["--unshare-user", "--disable-userns"]
        env = [arg for key, value in CLEAN_ENV.items() for arg in ("--setenv", key, value)]
        return (["bwrap", "--die-with-parent", "--new-session", "--as-pid-1", *NAMESPACES, *user, "--clearenv", *env]
                + view.bwrap_args(ops) + ["--chdir", "/tmp", "--"] + command)
    if mode == "unshare":
        user = [] if uid is not None else ["--user", "--map-root-user"]
        spec = {"root": root_dir, "ops": ops, "uid": uid, "argv": command, "env": CLEAN_ENV}
        setup = Path(__file__).with_name("mount_view.py").read_text()
        return (["setpriv", "--pdeathsig", "KILL", "--", "unshare", *user, "--mount", "--net", "--pid", "--ipc", "--uts",
                 "--fork", "--kill-child", "--", command[0], "-I", "-S", "-c", setup, json.dumps(spec)])
    raise UserError(f"unknown sandbox mode {mode!r}", f"use one of: {', '.join(SETTINGS)}")


def sandbox_python() -> str:
    """The interpreter the workers run: this one's base interpreter (a venv's packages never enter)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def pick_worker_uid(taken: set[int]) -> int:
    """A uid no process uses now, so each worker's RLIMIT_NPROC budget and kill(-1) reach are its own."""
    busy = set(process_uids().values()) | taken | {65534, 65535}
    pick = random.SystemRandom()
    while True:
        uid = pick.randrange(FIRST_UID, LAST_UID)
        if uid not in busy:
            return uid


def process_uids() -> dict[int, int]:
    """pid -> real uid of every process (from /proc/<pid>/status: the folder's owner reads as root
    for non-dumpable processes, which every sandbox process is)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status", "rb") as fh:
                    for line in fh:
                        if line.startswith(b"Uid:"):
                            found[int(entry)] = int(line.split()[1])
                            break
            except (OSError, ValueError, IndexError):
                pass
    return found
