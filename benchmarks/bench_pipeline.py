"""Pipeline overhead: wall time of a full eval of one checkpoint / time spent in generation calls.

The limit is 1.0 (nothing but generation); goal <= 1.10. Model loading is excluded from both (it
is the same fixed cost with or without the pipeline) and reported separately.

    .venv/bin/python benchmarks/bench_pipeline.py [--items 200] [--k-max 2]
    nice -n 5 .venv/bin/python benchmarks/bench_pipeline.py --model real --task gsm8k --items 16 --k-max 1 \
        --max-new-tokens 128 --batch-size 16     # the real model (make real-model)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sustain.eval.config import EvalConfig
from sustain.eval.generators import Generator, make_generator
from sustain.eval.pipeline import run_eval

from bench_cpu_generation import shared_data  # noqa: E402  (this folder is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]


class TimedGenerator(Generator):
    """Wraps a generator and adds up the seconds spent inside generate()."""

    def __init__(self, inner: Generator):
        self.inner, self.model_id, self.seconds, self.calls = inner, inner.model_id, 0.0, 0

    def generate(self, conversations, cfg):
        started = time.perf_counter()
        try:
            return self.inner.generate(conversations, cfg)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="model folder, 'real' for the real model (make real-model); "
                                                 "default: the cached tiny base model")
    p.add_argument("--task", default="arith")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--k-max", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    if a.model == "real":
        from sustain.real_model import gguf_path

        a.model = str(gguf_path())
    elif a.model is None:
        from sustain.train.tiny import ensure_tiny_base

        a.model = str(ensure_tiny_base(ROOT / ".cache" / "tiny-models"))
    started = time.perf_counter()
    timed = TimedGenerator(make_generator("hf", model=a.model))
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        cfg = EvalConfig(model=a.model, tasks=[a.task], data=shared_data(), limit=a.items, out=tmp, k_max=a.k_max,
                         max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
        started = time.perf_counter()
        summary = run_eval(cfg, generator=timed)
        wall = time.perf_counter() - started
    print(f"{a.task}, {a.items} items, k=1..{a.k_max}: accuracy {summary['accuracy']['value']:.3f}, "
          f"{summary['constrained_runs']} constrained runs, {timed.calls} generate() calls")
    print(f"  model load {load_s:.2f} s (excluded)")
    print(f"  full eval wall {wall:.2f} s, generation {timed.seconds:.2f} s")
    print(f"  overhead ratio wall/generation: {wall / timed.seconds:.3f}  (limit 1.0, goal <= 1.10)")


if __name__ == "__main__":
    main()
