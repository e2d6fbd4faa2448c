"""Inside the sandbox: the program host (untrusted) and the test runner (trusted), one pair per program.

Why two processes: code that runs in a Python process can change anything in it (builtins, the
harness's functions, sys.exit, the assert's operands, a nonce in memory), so no verdict written by
that process can be trusted. Here the model's program runs alone in the *host* process; the
dataset's tests run in the *runner*, which never executes model-written code. The runner calls the
program's functions over a socket and gets back only plain data (None, bool, int, float, complex,
str, bytes, tuple, list, dict, set, frozenset) decoded from JSON, so a returned object cannot lie
about equality and nothing the host does can reach the runner's builtins or control flow.

The verdict: the runner writes it to a pipe that the host closes before any program code runs,
together with a nonce the runner reads only after the host was forked (the host's memory never
holds it). The runner is not dumpable, so the host (same uid, no capabilities) cannot read its
memory, its file descriptors or ptrace it. A host that exits, kills the runner or hangs produces no
verdict, which the fork-server reports as a failure.

Stdlib only: this file is sent into the sandbox as source text.
"""
import builtins
import json
import os
import resource
import signal
import socket
import struct
import sys
import time

MAX_MESSAGE = 64 << 20  # a reply bigger than this is a failure, not an evaluator memory problem
SMALL_INT = 1 << 62  # larger ints travel as hex: int->str is capped at 4300 digits in 3.11+


class ProgramError(Exception):
    """An exception raised inside the program, re-raised in the runner under its type's name."""

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name


class ProgramExited(Exception):
    """The host process ended (or closed its socket) before the tests finished."""


class ProtocolError(Exception):
    """The host sent something that is not a well-formed reply."""


# ---------------------------------------------------------------- plain data over JSON


def to_wire(value, depth=0):
    """Plain data as JSON-ready values; tuples, sets, bytes, complex and big ints carry a tag."""
    if depth > 200:
        raise TypeError("value nested too deeply to send")
    t = type(value)
    if value is None or t is bool or t is str or t is float:
        return value
    if t is int:
        return value if -SMALL_INT < value < SMALL_INT else {"i": hex(value)}
    if t is list:
        return [to_wire(v, depth + 1) for v in value]
    if t is tuple:
        return {"t": [to_wire(v, depth + 1) for v in value]}
    if t is dict:
        return {"d": [[to_wire(k, depth + 1), to_wire(v, depth + 1)] for k, v in value.items()]}
    if t is set or t is frozenset:
        return {"s" if t is set else "f": [to_wire(v, depth + 1) for v in value]}
    if t is bytes:
        return {"b": value.hex()}
    if t is complex:
        return {"c": [value.real, value.imag]}
    return to_wire(_coerce(value), depth + 1)


def _coerce(value):
    """Subclasses of plain types (and numpy-style scalars) become the plain type; anything else fails."""
    import numbers

    for base in (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset):
        if isinstance(value, base):
            return base(value)
    for abc, plain in ((numbers.Integral, int), (numbers.Real, float), (numbers.Complex, complex)):
        if isinstance(value, abc):
            return plain(value)
    raise TypeError(f"the program returned a {type(value).__name__}, which the tests cannot receive")


def from_wire(value):
    """The inverse of to_wire, strict: anything but the tags above is a ProtocolError."""
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if t is list:
        return [from_wire(v) for v in value]
    if t is not dict or len(value) != 1:
        raise ProtocolError("malformed value")
    (tag, inner), = value.items()
    try:
        if tag == "i" and type(inner) is str:
            return int(inner, 16)
        if tag == "b" and type(inner) is str:
            return bytes.fromhex(inner)
        if tag == "c" and type(inner) is list and len(inner) == 2:
            return complex(float(inner[0]), float(inner[1]))
        if type(inner) is list:
            if tag == "t":
                return tuple(from_wire(v) for v in inner)
            if tag == "s":
                return {from_wire(v) for v in inner}
            if tag == "f":
                return frozenset(from_wire(v) for v in inner)
            if tag == "d":
                return {from_wire(k): from_wire(v) for k, v in inner}
    except (TypeError, ValueError) as exc:  # e.g. an unhashable key
        raise ProtocolError(f"malformed value ({exc})") from None
    raise ProtocolError(f"unknown tag {str(tag)[:20]!r}")


def send(sock, message):
    data = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv(sock):
    """One framed message, or None at end of stream."""
    header = _read_exact(sock, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_MESSAGE:
        raise ProtocolError("message too large")
    data = _read_exact(sock, size)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:  # includes undecodable bytes
        raise ProtocolError("malformed message") from None


def _read_exact(sock, size):
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- the host (untrusted side)


def run_host(sock, code, workdir, limits):
    """Load the program and answer calls until the runner hangs up. Never returns."""
    try:
        _enter_jail(sock.fileno(), workdir, limits)
        namespace = {"__name__": "__candidate__", "__builtins__": builtins}
        try:
            compiled = compile(code, "<program>", "exec")
        except (SyntaxError, ValueError) as exc:
            send(sock, ["syntax", _describe(exc)])
            os._exit(1)
        try:
            exec(compiled, namespace)
        except BaseException as exc:  # the program's own failure, reported by name
            _flush_output()
            send(sock, ["error", type(exc).__name__, _describe(exc)])
            os._exit(1)
        _flush_output()
        send(sock, ["ready"])
        while True:
            request = recv(sock)
            if request is None:
                os._exit(0)
            send(sock, _answer(namespace, request))
    finally:
        os._exit(1)


def _enter_jail(keep_fd, workdir, limits):
    """Before any program code: close every inherited descriptor, own session, limits, fresh folder."""
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 1 << 16)
    os.setsid()
    os.chdir(workdir)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    os.close(null)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stdin = open(0, "r", closefd=False)
    for name, value in (
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_NPROC", limits["nproc"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]),
        ("RLIMIT_NOFILE", 256),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))
    # SIGXCPU at the soft limit (reported as a timeout), SIGKILL one second later
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))


def _answer(namespace, request):
    try:
        if type(request) is not list or len(request) != 4 or request[0] != "call":
            raise ProtocolError("bad request")
        _, name, args, kwargs = request
        function = namespace.get(name)
        if function is None:
            raise NameError(f"name {name!r} is not defined by the program")
        value = function(*from_wire(args), **from_wire(kwargs))
        reply = ["ok", to_wire(value)]
        json.dumps(reply)  # fail here, as the program's error, if it cannot be encoded
    except BaseException as exc:  # includes SystemExit from the program: a failure, not an exit
        reply = ["raise", type(exc).__name__, _describe(exc)]
    _flush_output()
    return reply


def _describe(exc):
    try:
        return str(exc)[:500]
    except BaseException:
        return "(unprintable)"


def _flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# ---------------------------------------------------------------- the runner (trusted side)


def run_tests(job, workdir, limits, nonce_fd, verdict_fd):
    """Fork the host, run the dataset's tests against it, write the verdict. Never returns."""
    verdict = {"passed": False, "reason": "no completion report", "message": ""}
    host_pid = None
    try:
        _set_dumpable(False)
        runner_sock, host_sock = socket.socketpair()
        host_pid = os.fork()
        if host_pid == 0:
            runner_sock.close()
            run_host(host_sock, job["code"], workdir, limits)
        host_sock.close()
        nonce = os.read(nonce_fd, 64).decode()  # read only now, so the host's memory never held it
        os.close(nonce_fd)
        verdict = _test(job, runner_sock, host_pid)
        verdict["nonce"] = nonce
    except BaseException as exc:  # a harness failure is a failed run, never a pass
        verdict = {"passed": False, "reason": "harness error", "message": _describe(exc)}
    finally:
        if host_pid:
            _kill_group(host_pid)
        try:
            os.write(verdict_fd, json.dumps(verdict).encode())
        finally:
            os._exit(0)


def _test(job, sock, host_pid):
    try:
        status = recv(sock)
        if status is None:
            return _exited(host_pid)
        if status[0] == "syntax":
            return {"passed": False, "reason": "syntax error", "message": str(status[1])}
        if status[0] == "error":
            return _failure(ProgramError(str(status[1]), str(status[2])))
        if status[0] != "ready":
            raise ProtocolError("bad status")
        namespace = {"__name__": "__test__"}
        for name in job["exports"]:
            namespace[name] = _proxy(sock, name)
        exec(compile(job["test"], "<test>", "exec"), namespace)
        exec(compile(job["call"], "<call>", "exec"), namespace)
    except ProgramExited:
        return _exited(host_pid)
    except Exception as exc:
        return _failure(exc)
    return {"passed": True, "reason": "passed", "message": ""}


def _proxy(sock, name):
    """A stand-in for one of the program's functions: each call is one request to the host."""

    def call(*args, **kwargs):
        send(sock, ["call", name, to_wire(list(args)), to_wire(kwargs)])
        reply = recv(sock)
        if reply is None:
            raise ProgramExited()
        if type(reply) is list and len(reply) == 2 and reply[0] == "ok":
            return from_wire(reply[1])
        if type(reply) is list and len(reply) == 3 and reply[0] == "raise":
            raise _as_builtin_exception(str(reply[1]), str(reply[2]))
        raise ProtocolError("bad reply")

    call.__name__ = call.__qualname__ = name
    return call


def _as_builtin_exception(name, message):
    """The program's exception as the builtin type of that name when it is one (tests may catch it)."""
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            exc = kind(message)
            exc.program_exception = name
            return exc
        except Exception:
            pass
    return ProgramError(name, message)


def _failure(exc):
    name = exc.name if isinstance(exc, ProgramError) else type(exc).__name__
    if name == "MemoryError":
        reason = "memory"
    elif isinstance(exc, ProtocolError):
        reason = "protocol error"
    else:
        reason = f"failed: {name}"
    return {"passed": False, "reason": reason, "message": _describe(exc)}


def _exited(host_pid):
    """The host ended before the tests did; its exit status says how (a CPU-limit kill is a timeout)."""
    status = None
    for _ in range(100):
        pid, status = os.waitpid(host_pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.002)
    else:
        return {"passed": False, "reason": "exited early", "message": "closed its channel"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return {"passed": False, "reason": "timeout", "message": "CPU time limit"}
        return {"passed": False, "reason": "exited early", "message": f"killed by {signal.Signals(sig).name}"}
    return {"passed": False, "reason": "exited early", "message": f"exit code {os.WEXITSTATUS(status)}"}


def _kill_group(pid):
    """Kill the host's process group and reap the host (what escaped the group, the fork-server kills)."""
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def prctl(option, value):
    import ctypes

    global _LIBC
    if _LIBC is None:  # loaded once in the fork-server, inherited by every fork
        _LIBC = ctypes.CDLL(None, use_errno=True)
    if _LIBC.prctl(int(option), int(value), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


_LIBC = None
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


def _set_dumpable(flag):
    """A non-dumpable process's memory and descriptors are closed to same-uid peers (no ptrace either)."""
    prctl(PR_SET_DUMPABLE, int(flag))
