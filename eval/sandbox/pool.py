"""The evaluator's side: a pool of sandboxed fork-server workers that run programs in parallel.

Each worker is one long-lived sandboxed interpreter (worker.py) started once; programs are sent
to idle workers one at a time and their results read back, all from one thread with select().
A worker that dies or stops answering fails its current program with a reason and is replaced;
the run goes on.
"""
from __future__ import annotations

import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sustain.eval.errors import UserError
from sustain.eval.sandbox import harness, syscall_filter, worker
from sustain.eval.sandbox.isolation import CLEAN_ENV, pick_worker_uid, process_uids, resolve_mode, sandbox_python, wrap
from sustain.eval.sandbox.view import PRIVATE_DIRS

log = logging.getLogger(__name__)

# Runs inside the sandbox: makes modules of the sources passed as arguments (in order), starts the server.
MODULES = (("sandbox_harness", harness), ("sandbox_filter", syscall_filter), ("sandbox_worker", worker))
BOOTSTRAP = (
    "import json, sys, types\n"
    f"for name, source in zip({[name for name, _ in MODULES]!r}, sys.argv[1:]):\n"
    "    module = sys.modules[name] = types.ModuleType(name)\n"
    "    exec(compile(source, name + '.py', 'exec'), module.__dict__)\n"
    "sys.modules['sandbox_worker'].main(json.loads(sys.argv[-1]))\n"
)
START_TIMEOUT_S = 30.0
GRACE_S = 3.0  # on top of timeout_s: the worker's own clean-up (milliseconds) before the evaluator gives up on it
PROCESSES_PER_WORKER = 3  # fork-server, runner, program: RLIMIT_NPROC counts them too


@dataclass(frozen=True)
class Program:
    """A model-written program and the trusted tests that judge it.

    code:        the program (e.g. a HumanEval prompt plus the model's completion)
    test:        test code (e.g. defines check(candidate)); it runs in a separate process
    entry_point: the function under test
    exports:     other program functions the tests call by name (e.g. helpers from the prompt)
    call:        the statement that runs the tests; default "check(<entry_point>)"
    """

    code: str
    test: str
    entry_point: str
    exports: tuple[str, ...] = ()
    call: str = ""
    id: str = ""

    def job(self) -> dict:
        names = [self.entry_point, *(n for n in self.exports if n != self.entry_point)]
        return {"code": self.code, "test": self.test, "exports": names,
                "call": self.call or f"check({self.entry_point})"}


@dataclass
class Result:
    """passed is True only when the test harness itself reported that every test ran and passed.

    reason: "passed", "syntax error", "failed: <ExceptionName>", "timeout", "memory",
            "output limit", "exited early", "no completion report", "worker crashed", ...
    """

    id: str
    passed: bool
    reason: str
    message: str = ""
    stdout: str = ""  # bounded tails of what the program printed
    stderr: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Sandbox:
    """Runs programs in isolated, resource-limited processes, `workers` at a time.

    with Sandbox(workers=2, timeout_s=10) as box:
        results = box.run([Program(code, test, "add")])
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        max_procs: int = 16,
        max_file_mb: int = 16,
        tmp_mb: int = 64,
        isolation: str = "auto",
        tail_chars: int = 2000,
    ):
        for name, value, low in (("workers", workers, 1), ("timeout_s", timeout_s, 0.01), ("memory_mb", memory_mb, 64),
                                 ("max_procs", max_procs, 0), ("max_file_mb", max_file_mb, 1), ("tmp_mb", tmp_mb, 1)):
            if not isinstance(value, (int, float)) or value < low:
                raise UserError(f"Sandbox {name} must be a number >= {low}, got {value!r}", f"pass {name}>={low}")
        self.mode = resolve_mode(isolation)
        self.timeout_s = float(timeout_s)
        self._root = os.geteuid() == 0
        self._python = sandbox_python()
        self._max_procs = int(max_procs)
        self._tmp_bytes = int(max(tmp_mb, max_file_mb * 2)) << 20
        self._limits = {"memory_bytes": int(memory_mb) << 20, "cpu_s": math.ceil(timeout_s) + 1,
                        "file_bytes": int(max_file_mb) << 20}
        self._tail_bytes = int(tail_chars)
        self._folder = tempfile.mkdtemp(prefix="sustain-sandbox-")
        self._sources = [Path(module.__file__).read_text() for _, module in MODULES]
        self._workers: list[_Worker] = [_Worker(i) for i in range(int(workers))]
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._folder)
        try:
            for w in self._workers:
                self._launch(w)
            for w in self._workers:
                w.wait_hello()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ public

    def run(self, programs: list[Program]) -> list[Result]:
        """Run every program (in parallel over the workers); results come back in input order."""
        programs = list(programs)
        for p in programs:
            if not isinstance(p, Program):
                raise UserError(f"Sandbox.run takes Program objects, got {type(p).__name__}",
                                "wrap the code as Program(code=..., test=..., entry_point=...)")
        if not self._finalizer.alive:
            raise UserError("this Sandbox is closed", "create a new Sandbox (or run inside its `with` block)")
        results: list[Result | None] = [None] * len(programs)
        queue = deque(range(len(programs)))
        with self._lock:  # one run at a time: the workers' pipes are not shared between threads
            while queue or any(w.job is not None for w in self._workers):
                for w in self._workers:
                    if w.job is None and queue:
                        self._send(w, queue.popleft(), programs)
                self._collect(programs, results)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop every worker and remove the scratch folders; nothing started by the sandbox stays alive."""
        self._finalizer()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ workers

    def _launch(self, w: "_Worker") -> None:
        uid = pick_worker_uid({o.uid for o in self._workers if o.uid is not None}) if self._root else None
        root_dir = os.path.join(self._folder, f"root{w.index}")  # unshare mounts the worker's new root here
        shutil.rmtree(root_dir, ignore_errors=True)
        os.mkdir(root_dir, 0o700)
        if uid is not None:
            nproc = PROCESSES_PER_WORKER + self._max_procs
        else:  # the limit counts every process of our uid, inside the sandbox or not
            mine = sum(owner == os.getuid() for owner in process_uids().values())
            nproc = mine + 2 * PROCESSES_PER_WORKER * len(self._workers) + self._max_procs
        config = {"scratch": "/tmp", "private": list(PRIVATE_DIRS), "timeout_s": self.timeout_s,
                  "tail_bytes": self._tail_bytes, "uid": uid if self.mode == "bwrap" else None,
                  "limits": {**self._limits, "nproc": nproc}}
        command = wrap(self.mode, [self._python, "-I", "-S", "-B", "-c", BOOTSTRAP, *self._sources, json.dumps(config)],
                       uid=uid, tmp_bytes=self._tmp_bytes, root_dir=root_dir)
        w.start(command, Path(self._folder) / f"worker{w.index}.log", uid)

    def _send(self, w: "_Worker", index: int, programs: list[Program]) -> None:
        w.job = (index, time.monotonic() + self.timeout_s + GRACE_S)
        try:
            w.send(programs[index].job())
        except OSError:  # the worker died while idle: replace it and send again
            self._replace(w, "a broken pipe")
            w.job = (index, time.monotonic() + self.timeout_s + GRACE_S)
            w.send(programs[index].job())

    def _collect(self, programs: list[Program], results: list) -> None:
        """Wait for the next reply (or deadline) and file it; replace workers that crashed or hung."""
        busy = [w for w in self._workers if w.job is not None]
        wait = max(0.0, min(w.job[1] for w in busy) - time.monotonic())
        readable, _, _ = select.select([w.fd for w in busy], [], [], wait)
        now = time.monotonic()
        for w in busy:
            index, deadline = w.job
            if w.fd in readable:
                reply = w.read_line()
                if reply is False:
                    continue  # partial line, more to come
                if reply is None:
                    reply = {"passed": False, "reason": "worker crashed", "message": w.log_tail()}
            elif now >= deadline:
                reply = {"passed": False, "reason": "timeout", "message": "the worker stopped answering"}
            else:
                continue
            results[index] = _result(programs[index].id, reply)
            w.job = None
            if not w.alive_and_clean() or now >= deadline:
                self._replace(w, reply["reason"])

    def _replace(self, w: "_Worker", why: str) -> None:
        log.info("sandbox worker %d replaced after %s", w.index, why)
        w.stop()
        self._launch(w)
        w.wait_hello()


def _result(program_id: str, reply: dict) -> Result:
    return Result(
        id=program_id,
        passed=reply.get("passed") is True,
        reason=str(reply.get("reason", "no completion report")),
        message=str(reply.get("message", "")),
        stdout=str(reply.get("stdout", "")),
        stderr=str(reply.get("stderr", "")),
        duration_s=float(reply.get("duration_s", 0.0)),
    )


class _Worker:
    """One sandboxed fork-server process and the evaluator's end of its pipes."""

    def __init__(self, index: int):
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.uid: int | None = None
        self.job: tuple[int, float] | None = None  # (program index, deadline)
        self.log_path: Path | None = None
        self._buffer = b""
        self._eof = False

    @property
    def fd(self) -> int:
        return self.proc.stdout.fileno()

    def start(self, command: list[str], log_path: Path, uid: int | None) -> None:
        self.log_path, self.uid, self._buffer, self._eof = log_path, uid, b"", False
        with open(log_path, "wb") as log_file:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                                         env=CLEAN_ENV, cwd="/", start_new_session=True, close_fds=True)

    def wait_hello(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            hello = self.read_line() if ready else None
            if hello is not False:
                break
        if not (isinstance(hello, dict) and hello.get("hello")):
            self.stop()
            raise UserError(f"sandbox worker failed to start: {self.log_tail() or 'no output'}",
                            "run with SUSTAIN_DEBUG=1 to see the worker's log; check that bubblewrap works (apt-get install bubblewrap)")

    def send(self, job: dict) -> None:
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        self.proc.stdin.flush()

    def read_line(self):
        """The next complete JSON line; False when only part of it has arrived; None at EOF/garbage."""
        if b"\n" not in self._buffer and not self._eof:
            chunk = os.read(self.fd, 1 << 20)
            self._buffer += chunk
            self._eof = not chunk
        if b"\n" not in self._buffer:
            return None if self._eof else False
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def alive_and_clean(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self._eof and not self._buffer

    def log_tail(self, size: int = 400) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace").strip()
        except (OSError, AttributeError):
            return ""

    def stop(self) -> None:
        """Kill the worker's whole session, then anything its uid still runs (a program that escaped)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.uid is not None:
            _kill_uid(self.uid)
        self.proc = None


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of a uid that only this worker used (programs that escaped its session)."""
    for _ in range(50):
        found = [pid for pid, owner in process_uids().items() if owner == uid]
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def _shutdown(workers: list[_Worker], folder: str) -> None:
    for w in workers:
        if w.proc is not None:
            try:
                w.proc.stdin.close()  # a clean exit for an idle fork-server
            except OSError:
                pass
    for w in workers:
        if w.proc is not None:
            try:
                w.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            w.stop()
    shutil.rmtree(folder, ignore_errors=True)
