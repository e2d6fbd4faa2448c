"""How a sandbox worker is launched: bubblewrap > unshare > rlimits only (with a logged warning).

bwrap:   new pid, net, ipc and uts namespaces; the root is an empty tmpfs with /usr (and the
         interpreter's prefix) bound read-only, a private /proc and /dev, a size-capped tmpfs /tmp;
         no /etc, /home, /root or project folder; dies with its parent.
unshare: new pid, net, ipc and uts namespaces; the file system is the host's (read access, and
         write access wherever the sandbox user may write).
rlimits: resource limits, a scrubbed environment and a separate session only: no network or
         file-system isolation, and a non-root evaluator's own processes are visible to (and can
         be signalled by) the programs. Used only when neither tool works, logged as a warning.

In every mode the environment is rebuilt from nothing, and when the evaluator runs as root the
worker drops to an unprivileged uid of its own (RLIMIT_NPROC does not bind root, and root could
read or signal anything).
"""
from __future__ import annotations

import functools
import logging
import os
import random
import shutil
import stat
import subprocess
import sys

from sustain.eval.errors import UserError

log = logging.getLogger(__name__)

MODES = ("bwrap", "unshare", "rlimits")
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
FIRST_UID, LAST_UID = 61000, 125000  # a root evaluator runs each worker as a fresh uid from this range
DROP_CAPS = ["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]


def resolve_mode(requested: str = "auto") -> str:
    """The isolation mode to use: the requested one if it works here, or the best that does."""
    if requested not in ("auto", *MODES):
        raise UserError(f"unknown sandbox isolation {requested!r}", f"use one of: auto, {', '.join(MODES)}")
    if requested == "auto":
        for mode in ("bwrap", "unshare"):
            if mode_works(mode):
                return mode
        log.warning(
            "sandbox: neither bubblewrap nor unshare works here; programs run with resource limits "
            "only and CAN reach the network and the file system (install bubblewrap: apt-get install bubblewrap)"
        )
        return "rlimits"
    if not mode_works(requested):
        raise UserError(f"sandbox isolation {requested!r} does not work on this machine",
                        "install bubblewrap (apt-get install bubblewrap) or use isolation='auto'")
    if requested == "rlimits":
        log.warning("sandbox: isolation='rlimits' gives no network or file-system isolation")
    return requested


@functools.cache
def mode_works(mode: str) -> bool:
    """Whether this mode's wrapper can start a process here (a 10 ms probe, cached)."""
    tools = {"bwrap": ["bwrap"], "unshare": ["unshare"], "rlimits": []}[mode]
    if os.geteuid() == 0:
        tools.append("setpriv")  # how root drops to the worker's uid
    if not all(shutil.which(t) for t in tools):
        return False
    if mode == "rlimits":
        return True
    python = shutil.which("true") or "/bin/true"
    command = wrap(mode, [python], uid=FIRST_UID if os.geteuid() == 0 else None, tmp_bytes=1 << 20)
    try:
        return subprocess.run(command, env=CLEAN_ENV, capture_output=True, timeout=30, cwd="/").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wrap(mode: str, command: list[str], *, uid: int | None, tmp_bytes: int) -> list[str]:
    """`command` (an interpreter and its arguments) wrapped in this mode's isolation."""
    drop = ["setpriv", "--reuid", str(uid), "--regid", str(uid), *DROP_CAPS, "--"] if uid is not None else []
    if mode == "bwrap":
        return bwrap_prefix(command[0], tmp_bytes, unprivileged=uid is None) + drop + command
    die_with_parent = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
    if mode == "unshare":
        namespaces = ["--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
        as_user = [] if uid is not None else ["--map-current-user"]
        return die_with_parent + ["unshare", *as_user, *namespaces, "--"] + drop + command
    if uid is not None:  # one setpriv both drops to the uid and arms the parent-death signal
        return ["setpriv", "--pdeathsig", "KILL", *drop[1:]] + command
    return die_with_parent + command


def bwrap_prefix(python: str, tmp_bytes: int, unprivileged: bool) -> list[str]:
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if unprivileged:  # without root, namespaces need a user namespace; forbid nesting another
        args += ["--unshare-user", "--disable-userns"]
    args.append("--clearenv")
    for key, value in CLEAN_ENV.items():
        args += ["--setenv", key, value]
    args += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = interpreter_prefix(python)
    if prefix and not prefix.startswith("/usr/"):
        # parents are made world-traversable, so a prefix under /root is usable by the worker's uid
        parts = prefix.strip("/").split("/")
        for depth in range(1, len(parts)):
            args += ["--perms", "0755", "--dir", "/" + "/".join(parts[:depth])]
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    return args


def interpreter_prefix(python: str) -> str | None:
    """The installation folder of an interpreter binary (<prefix>/bin/python3.X)."""
    real = os.path.realpath(python)
    return os.path.dirname(os.path.dirname(real)) if os.path.basename(os.path.dirname(real)) == "bin" else None


def sandbox_python(mode: str, dropping_uid: bool) -> str:
    """The interpreter the workers run: this one's base interpreter, or one the dropped uid can run."""
    base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    if mode == "bwrap" or not dropping_uid:
        return base
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (base, shutil.which(minor) or "", f"/usr/bin/{minor}", "/usr/bin/python3"):
        if candidate and world_runnable(candidate):
            return os.path.realpath(candidate)
    raise UserError(f"no Python interpreter that the sandbox's unprivileged user can run (tried {base})",
                    f"install {minor} system-wide (e.g. apt-get install {minor}) or install bubblewrap")


def world_runnable(path: str) -> bool:
    """Whether any user can execute `path` and read its installation (every parent is o+x)."""
    real = os.path.realpath(path)
    try:
        if not os.stat(real).st_mode & stat.S_IXOTH:
            return False
        folder = os.path.dirname(real)
        while True:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False
            if folder == "/":
                return True
            folder = os.path.dirname(folder)
    except OSError:
        return False


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
