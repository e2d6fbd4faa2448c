"""The fork-server: one long-lived interpreter per worker, pid 1 of its sandbox, one fork per program.

A fresh interpreter costs ~110 ms and a bubblewrap sandbox ~60 ms more; this process pays that once
per worker and then forks a runner per program (see harness.py for why runner and program are two
processes). Per program: a fresh folder, the runner, a wall-clock deadline on the verdict, then one
kill(-1, SIGKILL) - every other process of the pid namespace at once, whatever it did (fork bomb,
double fork, setsid, stopped), since a per-child kill loop loses to a fork bomb - the zombies
reaped (as pid 1, every orphan is ours), and /tmp, /var/tmp, /dev/shm and HOME wiped. As pid 1 it
cannot be killed or stopped by the programs (the kernel drops such signals to a namespace's init).

Protocol with the evaluator: one JSON object per line, jobs on stdin and results on stdout; the
first line out is a hello. Stdlib only: this file is sent into the sandbox as source text.
"""
import json
import os
import shutil
import signal
import sys
import time

try:  # the names the bootstrap registers inside the sandbox
    import sandbox_filter as syscall_filter
    import sandbox_harness as harness
except ImportError:
    from sustain.eval.sandbox import harness, syscall_filter

# imported once here so every forked program and runner gets them for free
PRELOAD = (
    "bisect collections copy ctypes decimal fractions functools hashlib heapq itertools math "
    "numbers operator random re statistics string typing"
).split()
MAX_VERDICT = 1 << 20
MEMORY_POLL_S = 0.05  # how often the programs' total memory is checked while they run
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def main(config):
    filtered = _become(config.get("uid"))
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # stray prints of the runner cannot corrupt the protocol
    harness._set_dumpable(False)
    for module in PRELOAD:
        __import__(module)
    _reply(replies, {"hello": True, "pid": os.getpid(), "uid": os.getuid(), "syscall_filter": filtered})
    protocol_fds = (requests.fileno(), replies.fileno())
    for number, line in enumerate(requests):
        try:
            result = run_job(json.loads(line), number, config, protocol_fds)
        except Exception as exc:  # this worker's own failure: report it, keep serving
            result = {"passed": False, "reason": "harness error", "message": f"{type(exc).__name__}: {exc}"}
        _reply(replies, result)


def run_job(job, number, config, protocol_fds):
    started = time.monotonic()
    scratch = config["scratch"]
    workdir = os.path.join(scratch, f"job{number}")
    os.mkdir(workdir, 0o700)
    verdict_r, verdict_w = os.pipe()
    nonce_r, nonce_w = os.pipe()
    runner = os.fork()
    if runner == 0:
        try:
            for fd in (*protocol_fds, verdict_r, nonce_w):
                os.close(fd)
            harness.run_tests(job, workdir, config["limits"], nonce_r, verdict_w)
        finally:
            os._exit(1)
    os.close(verdict_w)
    os.close(nonce_r)
    nonce = os.urandom(16).hex()  # made after the fork: no child's memory holds it
    os.write(nonce_w, nonce.encode())
    os.close(nonce_w)
    raw, stopped = _read_until(verdict_r, started + config["timeout_s"], config["limits"]["memory_bytes"])
    os.close(verdict_r)
    _kill_all()
    result = _verdict(raw, nonce, stopped)
    result["stdout"], out_size = _tail(os.path.join(workdir, "stdout"), config["tail_bytes"])
    result["stderr"], err_size = _tail(os.path.join(workdir, "stderr"), config["tail_bytes"])
    if not result["passed"] and max(out_size, err_size) >= config["limits"]["file_bytes"]:
        result["reason"] = "output limit"
    for folder in config["private"]:
        _wipe(folder)
    result["duration_s"] = round(time.monotonic() - started, 4)
    return result


def _verdict(raw, nonce, stopped):
    if stopped == "timeout":
        return {"passed": False, "reason": "timeout", "message": ""}
    if stopped == "memory":
        return {"passed": False, "reason": "memory", "message": "its processes together exceeded the memory limit"}
    try:
        verdict = json.loads(raw)
    except ValueError:
        verdict = None
    if type(verdict) is not dict or verdict.get("nonce") != nonce:
        return {"passed": False, "reason": "no completion report", "message": ""}
    return {
        "passed": verdict.get("passed") is True,
        "reason": str(verdict.get("reason", "")),
        "message": str(verdict.get("message", ""))[:1000],
    }


def _read_until(fd, deadline, memory_cap):
    """Everything written to fd until EOF, and why it stopped early: None, "timeout" or "memory"
    (the program's processes together hold more than memory_cap bytes: RLIMIT_AS binds each process
    alone, so a fork of many big processes is caught here)."""
    import select

    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), "timeout"
        ready, _, _ = select.select([fd], [], [], min(left, MEMORY_POLL_S))
        if not ready:
            if _resident_bytes() > memory_cap:
                return b"".join(chunks), "memory"
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks), None
        size += len(chunk)
        if size <= MAX_VERDICT:
            chunks.append(chunk)


def _resident_bytes():
    """Resident memory of every other process in this pid namespace (statm is readable even for
    the non-dumpable runner and host)."""
    me, pages = str(os.getpid()), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != me:
            try:
                with open(f"/proc/{entry}/statm", "rb") as fh:
                    pages += int(fh.read().split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return pages * PAGE_BYTES


def _become(uid):
    """Root started this worker (bubblewrap without a user namespace): become the worker's own uid
    before anything else (all capabilities go with root), and never gain privileges again."""
    if uid is not None and os.getuid() != uid:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    harness.prctl(harness.PR_SET_PDEATHSIG, signal.SIGKILL)  # our parent is the launcher: die with it
    return syscall_filter.install()


def _kill_all():
    """SIGKILL every other process of this pid namespace in one call, then reap them all.

    kill(-1) reaches every process we may signal except ourselves; the kernel delivers it under the
    task-list lock, so a fork bomb cannot add children the signal misses. Repeated for any process
    that was mid-fork, until nothing is left to reap."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.001)


def _tail(path, size):
    """The last `size` bytes of a regular file the program wrote (never follows links or FIFOs)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return "", 0
    try:
        info = os.fstat(fd)
        if not (info.st_mode & 0o170000 == 0o100000):
            return "", 0
        os.lseek(fd, max(0, info.st_size - size), os.SEEK_SET)
        return os.read(fd, size).decode("utf-8", "replace"), info.st_size
    finally:
        os.close(fd)


def _wipe(scratch):
    """Remove everything the program left in the scratch folder, even folders it made read-only."""

    def unlock_and_retry(func, path, _):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    for entry in os.listdir(scratch):
        path = os.path.join(scratch, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=unlock_and_retry)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def _reply(stream, message):
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
