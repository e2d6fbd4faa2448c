"""Training wall time with the per-checkpoint eval callback in job-submission mode vs without it.

A fake `sbatch` on PATH answers with a job id at once (as a real one does: it only queues the job),
so the ratio measures what the callback adds to training: the submit call, the job record, and
polling for finished evals. Goal: ratio <= 1.02.

Two numbers: the end-to-end ratio of wall times (runs interleaved, best of N: on a shared machine
other load only ever adds time), and the callback's own share, timed inside the same runs
(time in its hooks / training time), which other load barely disturbs.

    .venv/bin/python benchmarks/bench_callback.py [--model PATH] [--steps 60] [--save-steps 5] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAKE_SBATCH = "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls.log\"\necho 1234\n"


HOOK_SECONDS = [0.0]


def time_hooks() -> None:
    """Accumulate the wall time spent in the callback's hooks."""
    from sustain.train.callbacks import SustainEvalCallback

    for name in ("on_train_begin", "on_save", "on_log", "on_train_end"):
        original = getattr(SustainEvalCallback, name)

        def timed(self, *a, _original=original, **kw):
            start = time.perf_counter()
            try:
                return _original(self, *a, **kw)
            finally:
                HOOK_SECONDS[0] += time.perf_counter() - start

        setattr(SustainEvalCallback, name, timed)


def train_once(model: str, out: Path, mode: str, steps: int, save_steps: int) -> float:
    from sustain.train import sft
    from sustain.train.config import parse_recipe

    argv = ["--config", str(ROOT / "recipes" / "demo" / "sft.yaml"), "--model_name_or_path", model,
            "--output_dir", str(out), "--eval_mode", mode, "--max_steps", str(steps), "--save_steps", str(save_steps),
            "--dataset_size", "512", "--per_device_train_batch_size", "16", "--report_to", "none",
            "--logging_steps", "5", "--disable_tqdm", "true", "--save_total_limit", "100"]
    start = time.perf_counter()
    sft.run(*parse_recipe("sft", argv))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a tiny base model folder (default: build/reuse the cached one)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.model is None:
        from sustain.train.tiny import ensure_tiny_base

        args.model = str(ensure_tiny_base(Path(os.environ.get("SUSTAIN_CACHE_DIR", ROOT / ".cache")) / "tiny-models"))

    with tempfile.TemporaryDirectory() as tmp:
        bin_dir = Path(tmp) / "bin"
        bin_dir.mkdir()
        (bin_dir / "sbatch").write_text(FAKE_SBATCH)
        (bin_dir / "sbatch").chmod(0o755)
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        times: dict[str, list[float]] = {"none": [], "sbatch": []}
        shares = []
        time_hooks()
        train_once(args.model, Path(tmp) / "warmup", "none", 5, 5)  # imports, caches
        for r in range(args.repeats):  # interleaved, so machine load drifts hit both alike
            for mode in ("none", "sbatch"):
                HOOK_SECONDS[0] = 0.0
                t = train_once(args.model, Path(tmp) / f"{mode}-{r}", mode, args.steps, args.save_steps)
                times[mode].append(t)
                if mode == "sbatch":
                    shares.append(HOOK_SECONDS[0] / (t - HOOK_SECONDS[0]))
        calls = (bin_dir / "calls.log").read_text().splitlines()
    expected = args.repeats * (args.steps // args.save_steps)
    assert len(calls) == expected, f"expected {expected} submissions, saw {len(calls)}"
    base, with_cb = min(times["none"]), min(times["sbatch"])
    print(f"steps={args.steps} saves={args.steps // args.save_steps} repeats={args.repeats}")
    print(f"without callback: best {base:.2f} s  all {[round(t, 2) for t in times['none']]}")
    print(f"sbatch callback:  best {with_cb:.2f} s  all {[round(t, 2) for t in times['sbatch']]}")
    print(f"ratio, wall time (callback / none, best of {args.repeats}): {with_cb / base:.3f}  (goal <= 1.02)")
    print(f"ratio, callback hooks' own time (1 + hooks / training, median): {1 + statistics.median(shares):.4f}")


if __name__ == "__main__":
    main()
