"""Hostile programs: each escape attempt is contained, fails with its reason, and the evaluator goes on.

Every hostile program is paired with a test it would pass if its trick worked (a reached server,
a visible secret, a faked exit...), so a false pass shows up as passed=True.
"""
import os
import socket
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from sustain.eval.sandbox import Program, Sandbox
from tests.conftest import ROOT, need_capability, need_command

SECRET = "fake-secret-7f3a9"
MARKER_SLEEP = "1000.4242"  # `sleep 1000.4242`: a left-behind process is easy to find by its argument
RETURNS_TRUE = "def check(f):\n    assert f() is True\n"
ADD_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
WRONG_ADD = "def add(a, b):\n    return 0\n"


def hostile_cases(port: int, outside: Path) -> dict[str, tuple[str, str, str, set[str]]]:
    """name -> (program, test, entry point, acceptable failure reasons)."""
    wrong = WRONG_ADD
    cases = {
        # runaway resources
        "infinite loop at import": ("while True:\n    pass\n", ADD_TEST, "add", {"timeout"}),
        "infinite loop in call": ("def add(a, b):\n    while True:\n        pass\n", ADD_TEST, "add", {"timeout"}),
        "sleep past the deadline": ("import time\ndef add(a, b):\n    time.sleep(30)\n    return a + b\n", ADD_TEST, "add", {"timeout"}),
        "fork bomb": ("import os\ndef f():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n", RETURNS_TRUE, "f", {"timeout"}),
        "thread bomb": ("import threading, time\ndef f():\n    for _ in range(100000):\n        threading.Thread(target=time.sleep, args=(60,)).start()\n    return True\n", RETURNS_TRUE, "f", {"failed: RuntimeError", "memory"}),
        "memory bomb at import": ("blob = bytearray(8 * 1024 ** 3)\n" + wrong, ADD_TEST, "add", {"memory"}),
        "memory bomb growing": ("def f():\n    chunks = []\n    while True:\n        chunks.append(b'x' * 10 ** 7)\n", RETURNS_TRUE, "f", {"memory"}),
        "deep recursion": ("import sys\nsys.setrecursionlimit(10 ** 7)\ndef f(n=0):\n    return f(n + 1)\n", RETURNS_TRUE, "f", {"exited early", "failed: RecursionError", "memory", "timeout"}),
        "disk filling past the file-size limit": ("import os\ndef f():\n    with open('big', 'wb') as fh:\n        for _ in range(8):\n            fh.write(b'x' * 2 ** 20)\n    return os.path.getsize('big') == 8 * 2 ** 20\n", RETURNS_TRUE, "f", {"failed: OSError"}),
        "disk filling with many files": ("def f():\n    for i in range(10 ** 6):\n        with open(f'f{i}', 'wb') as fh:\n            fh.write(b'x' * (2 ** 20 - 1))\n    return True\n", RETURNS_TRUE, "f", {"failed: OSError", "timeout"}),
        "huge output": ("def f():\n    while True:\n        print('x' * 10 ** 6)\n", RETURNS_TRUE, "f", {"output limit"}),
        # network
        "connect to a loopback server": (f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'escaped')\n    return True\n", RETURNS_TRUE, "f", {"failed: ConnectionRefusedError", "failed: OSError"}),
        "connect to an outside address": ("import socket\ndef f():\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return True\n", RETURNS_TRUE, "f", {"failed: OSError", "failed: TimeoutError"}),
        # file system
        "write outside its folder": (f"def f():\n    open({str(outside / 'escaped.txt')!r}, 'w').write('x')\n    return True\n", RETURNS_TRUE, "f", {"failed: FileNotFoundError", "failed: PermissionError", "failed: OSError"}),
        "write into the project folder": (f"def f():\n    open({str(ROOT / 'escaped-by-sandbox.txt')!r}, 'w').write('x')\n    return True\n", RETURNS_TRUE, "f", {"failed: FileNotFoundError", "failed: PermissionError", "failed: OSError"}),
        "read /etc/shadow": ("def f():\n    return 'root:' in open('/etc/shadow').read()\n", RETURNS_TRUE, "f", {"failed: FileNotFoundError", "failed: PermissionError"}),
        "read the project folder": (f"def f():\n    return 'sustain-suite' in open({str(ROOT / 'pyproject.toml')!r}).read()\n", RETURNS_TRUE, "f", {"failed: FileNotFoundError", "failed: PermissionError"}),
        # secrets
        "read the evaluator's environment": (f"import os\ndef f():\n    return os.environ.get('WANDB_API_KEY') == {SECRET!r}\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "search every process's environment": (textwrap.dedent(f"""\
            import os
            def f():
                for pid in os.listdir('/proc'):
                    try:
                        if {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read():
                            return True
                    except OSError:
                        pass
                return False
            """), RETURNS_TRUE, "f", {"failed: AssertionError"}),
        # faking a pass
        "sys.exit(0) at import": ("import sys\nsys.exit(0)\n", ADD_TEST, "add", {"failed: SystemExit"}),
        "os._exit(0) at import": ("import os\nos._exit(0)\n", ADD_TEST, "add", {"exited early"}),
        "raise SystemExit in the call": ("def add(a, b):\n    raise SystemExit(0)\n", ADD_TEST, "add", {"failed: SystemExit"}),
        "os._exit(0) in the call": ("import os\ndef add(a, b):\n    os._exit(0)\n", ADD_TEST, "add", {"exited early"}),
        "print a fake pass marker": ("import sys\nprint('passed')\nprint('{\"passed\": true, \"reason\": \"passed\"}')\nsys.stdout.flush()\nimport os\nos._exit(0)\n", ADD_TEST, "add", {"exited early"}),
        "write a fake verdict to every fd": (textwrap.dedent("""\
            import json, os
            for fd in range(3, 1024):
                try:
                    os.write(fd, json.dumps({"passed": True, "reason": "passed", "nonce": ""}).encode())
                except OSError:
                    pass
            os._exit(0)
            """), ADD_TEST, "add", {"exited early", "protocol error"}),  # its own call socket is among the fds
        "define its own check": ("def check(candidate):\n    pass\n" + wrong, ADD_TEST, "add", {"failed: AssertionError"}),
        "monkey-patch builtins": ("import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 3\n" + wrong, "def check(c):\n    assert abs(c(1, 2) - 3) == 3\n    assert len([1]) == 1\n", "add",
                                  {"failed: AssertionError", "protocol error"}),  # patched len() breaks its own replies
        "monkey-patch the harness": (textwrap.dedent("""\
            import sys
            for name, module in list(sys.modules.items()):
                if 'harness' in name or 'worker' in name:
                    for attr in ('run_tests', '_test', '_failure', 'recv', 'send', 'from_wire'):
                        if hasattr(module, attr):
                            setattr(module, attr, lambda *a, **k: {'passed': True, 'reason': 'passed'})
            def add(a, b):
                return 0
            """), ADD_TEST, "add", {"failed: AssertionError", "protocol error", "exited early", "timeout"}),
        "an always-equal result": ("class Same:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Same()\n", ADD_TEST, "add", {"failed: TypeError"}),
        "an int subclass that equals everything": ("class Eq(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\ndef add(a, b):\n    return Eq(0)\n", ADD_TEST, "add", {"failed: AssertionError"}),
        "garbage on the call channel": (textwrap.dedent("""\
            import os, struct
            def add(a, b):
                for fd in range(3, 64):
                    try:
                        os.write(fd, struct.pack('>I', 13) + b'["ok", 3]    ')
                    except OSError:
                        pass
                return 0
            """), ADD_TEST, "add", {"failed: AssertionError", "protocol error"}),
        # processes and signals
        "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + wrong, ADD_TEST, "add", {"no completion report"}),
        "stop the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n" + wrong, ADD_TEST, "add", {"timeout"}),
        "signal its process group": ("import os, signal\nos.killpg(0, signal.SIGKILL)\n", ADD_TEST, "add", {"exited early"}),
        "signal every process it can": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n", ADD_TEST, "add", {"worker crashed", "no completion report"}),
        "stop every process it can": ("import os, signal\nos.kill(-1, signal.SIGSTOP)\n" + wrong, ADD_TEST, "add", {"timeout"}),
        "read the parent's memory": ("import os\ndef f():\n    return len(open(f'/proc/{os.getppid()}/mem', 'rb').read(1)) >= 0\n", RETURNS_TRUE, "f", {"failed: PermissionError", "failed: OSError"}),
        "open the parent's descriptors": ("import os\ndef f():\n    return len(os.listdir(f'/proc/{os.getppid()}/fd')) > 0\n", RETURNS_TRUE, "f", {"failed: PermissionError"}),
        "leave a daemon thread": ("import threading, time\nthreading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n" + wrong, ADD_TEST, "add", {"failed: AssertionError"}),
        "leave a sleep subprocess": (f"import subprocess\nsubprocess.Popen(['sleep', '{MARKER_SLEEP}'])\n" + wrong, ADD_TEST, "add", {"failed: AssertionError"}),
        "leave a detached daemon": (textwrap.dedent(f"""\
            import os
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execvp('sleep', ['sleep', '{MARKER_SLEEP}'])
                os._exit(0)
            def add(a, b):
                return 0
            """), ADD_TEST, "add", {"failed: AssertionError"}),
    }
    return cases


HONEST = [
    ("def add(a, b):\n    return a + b\n", ADD_TEST, "add", True),
    ("def add(a, b):\n    return a * b\n", ADD_TEST, "add", False),
    ("def f():\n    return sorted([3, 1, 2]) == [1, 2, 3]\n", RETURNS_TRUE, "f", True),
    ("import math\ndef f():\n    return math.isclose(sum([0.1] * 10), 1.0)\n", RETURNS_TRUE, "f", True),
]


@pytest.fixture(scope="module")
def loopback():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    received = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            received.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def hostile_run(loopback, tmp_path_factory):
    """One batch: honest programs interleaved with every hostile one, on a bubblewrap sandbox."""
    need_command("bwrap", "bubblewrap")
    port, received = loopback
    outside = tmp_path_factory.mktemp("outside")
    cases = hostile_cases(port, outside)
    honest = [Program(code, test, entry, id=f"honest-{i}") for i, (code, test, entry, _) in enumerate(HONEST)]
    hostile = [Program(code, test, entry, id=name) for name, (code, test, entry, _) in cases.items()]
    batch = [p for pair in zip(hostile, honest * len(hostile)) for p in pair]
    with pytest.MonkeyPatch.context() as mp:
        for key in ("WANDB_API_KEY", "HF_TOKEN", "OPENAI_API_KEY"):
            mp.setenv(key, SECRET)
        sandbox = Sandbox(workers=2, timeout_s=2, memory_mb=256, max_procs=8, max_file_mb=1, tmp_mb=16)
        results = sandbox.run(batch)
        leftovers = _processes_under_fork_servers()
        alone = sandbox.run(honest)
        sandbox.close()
    return {
        "cases": cases, "results": {r.id: r for r in results}, "batch": batch, "batch_results": results, "leftovers": leftovers,
        "honest_alone": alone, "received": received, "outside": outside,
    }


def _processes_under_fork_servers():
    """Anything still running below a worker's fork-server once a run has returned."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            command = proc.cmdline()
            is_fork_server = "python" in os.path.basename(command[0]) and any("sandbox_worker" in c for c in command)
            if is_fork_server:
                found += [(p.pid, p.cmdline()) for p in proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return found


def test_at_least_thirty_hostile_programs(hostile_run):
    assert len(hostile_run["cases"]) >= 30


def test_every_hostile_program_fails_with_its_reason(hostile_run):
    wrong = {}
    for name, (_, _, _, expected) in hostile_run["cases"].items():
        result = hostile_run["results"][name]
        if result.passed or result.reason not in expected:
            wrong[name] = (result.passed, result.reason, result.message)
    assert wrong == {}


def test_honest_results_unchanged_next_to_hostile_ones(hostile_run):
    expected = [passed for *_, passed in HONEST]
    alone = [r.passed for r in hostile_run["honest_alone"]]
    in_batch = [(int(r.id.split("-")[1]), r.passed) for r in hostile_run["batch_results"] if r.id.startswith("honest-")]
    assert alone == expected
    assert len(in_batch) == len(hostile_run["cases"])
    assert [passed for _, passed in in_batch] == [expected[i] for i, _ in in_batch]


def test_no_process_outlives_its_program(hostile_run):
    assert hostile_run["leftovers"] == []
    marker = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if MARKER_SLEEP in " ".join(p.info["cmdline"] or [])]
    assert marker == []


def test_network_and_file_system_stayed_closed(hostile_run):
    assert hostile_run["received"] == []
    assert not (hostile_run["outside"] / "escaped.txt").exists()
    assert not (ROOT / "escaped-by-sandbox.txt").exists()


def test_huge_output_reaches_the_evaluator_only_as_a_tail(hostile_run):
    result = hostile_run["results"]["huge output"]
    assert 0 < len(result.stdout) <= 2000 and len(result.stderr) <= 2000


# What each fallback mode cannot contain (and says so): unshare shares the host's file system;
# rlimits-only also shares the network and the view of other processes of the same user.
FILE_SYSTEM = {"write outside its folder", "write into the project folder", "read /etc/shadow", "read the project folder"}
NOT_CONTAINED = {
    "unshare": FILE_SYSTEM,
    # kill(-1) reaches every process of the user when the evaluator is not root: never try it there
    "rlimits": FILE_SYSTEM | {"connect to a loopback server", "connect to an outside address", "search every process's environment",
                              "signal every process it can", "stop every process it can"},
}


@pytest.mark.parametrize("mode", ["unshare", "rlimits"])
def test_fallback_modes_give_no_false_pass(mode, loopback, tmp_path):
    if mode == "unshare":
        need_command("unshare", "util-linux")
    from sustain.eval.sandbox import isolation

    need_capability(isolation.mode_works(mode), f"{mode} cannot start a process in this container")
    cases = {name: case for name, case in hostile_cases(loopback[0], tmp_path).items() if name not in NOT_CONTAINED[mode]}
    programs = [Program(code, test, entry, id=name) for name, (code, test, entry, _) in cases.items()]
    honest = [Program(code, test, entry, id=f"honest-{i}") for i, (code, test, entry, _) in enumerate(HONEST)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_API_KEY", SECRET)
        with Sandbox(workers=2, timeout_s=2, memory_mb=256, max_procs=8, max_file_mb=1, tmp_mb=16, isolation=mode) as box:
            results = box.run(programs + honest)
            leftovers = _processes_under_fork_servers()
    assert [r.id for r in results[: len(programs)] if r.passed] == []
    assert [r.passed for r in results[len(programs):]] == [passed for *_, passed in HONEST]
    assert leftovers == []
