"""Tiny base model pretraining (train/tiny.py): seconds per optimizer step on 1 vs 2 torch threads.

The demo and the tiny build train on one thread because this model's ops are too small to split
(train/tiny.py). Goal: ratio (2 threads / 1 thread, per step) >= 1.0, i.e. one thread is no slower.
Also prints the demo base model's projected build time from the measured step time.

A step's time is the difference of two builds that differ only in their step count, so tokenizer
training and dataset preparation cancel out; runs are interleaved and the best of N kept (other load
on a shared machine only ever adds time).

    .venv/bin/python benchmarks/bench_tiny_build.py [--short 10] [--long 90] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_seconds(steps: int, threads: int, train_rows: int, demo_options: dict) -> float:
    from sustain.train.tiny import TinyConfig, train_tiny

    options = {**demo_options, "steps": steps, "train_rows": train_rows}
    with tempfile.TemporaryDirectory() as tmp:
        out = train_tiny(Path(tmp) / "m", TinyConfig.from_options(**options), progress=False, threads=threads)
        return json.loads((out / "tiny_build.json").read_text())["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=10, help="steps of the overhead build")
    parser.add_argument("--long", type=int, default=90, help="steps of the measured build")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=2048, help="rows tokenised per build (overhead only)")
    args = parser.parse_args()

    import datasets
    import transformers

    from sustain.train.demo import DEMO_BASE

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    best = {1: {}, 2: {}}
    for _ in range(args.repeats):
        for threads in (1, 2):  # interleaved: a burst of outside load hits both settings alike
            for steps in (args.short, args.long):
                seconds = build_seconds(steps, threads, args.train_rows, DEMO_BASE)
                best[threads][steps] = min(best[threads].get(steps, float("inf")), seconds)
    per_step = {t: (best[t][args.long] - best[t][args.short]) / (args.long - args.short) for t in (1, 2)}
    overhead = best[1][args.short] - args.short * per_step[1]
    print(f"seconds per step: 1 thread {per_step[1]:.3f}, 2 threads {per_step[2]:.3f}")
    print(f"ratio (2 threads / 1 thread) = {per_step[2] / per_step[1]:.2f}  (goal >= 1.0)")
    print(f"projected demo base build ({DEMO_BASE['steps']} steps, 1 thread): "
          f"{DEMO_BASE['steps'] * per_step[1] + overhead:.0f} s plus tokenising its 16384 rows")


if __name__ == "__main__":
    main()
