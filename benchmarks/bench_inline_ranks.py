"""Inline checkpoint eval on N ranks vs rank 0 alone, as in a training job on one CPU node.

Each rank is a process with one torch thread (what torchrun gives each rank by default), loads the
checkpoint itself and runs the pipeline on its share of the items (sustain.eval.shards); rank 0 then
merges the records. Timed from a barrier that every warmed-up rank has reached to the merged
records. Baseline: rank 0 evaluating every item while the others wait. Also checks that
the merged records equal rank 0's one-rank records (all but the batch-layout field). Prints one JSON line.

    python benchmarks/bench_inline_ranks.py [--model DIR] [--ranks 2] [--items 48]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sustain.eval.config import EvalConfig
from sustain.eval.shards import merge_shards  # imported before any timing: rank 0 has it loaded in training

ROOT = Path(__file__).resolve().parents[1]
# A rank as in a training job at its second checkpoint: the process exists and an earlier eval has
# loaded what the pipeline imports lazily (a 2-item warm-up eval here). It waits at the "barrier" (a
# go file the parent writes once every rank is ready), then evaluates its share.
WORKER = """
import dataclasses, json, os, sys, time, torch
torch.set_num_threads(1)
from sustain.eval.config import EvalConfig
from sustain.eval.pipeline import run_eval
from sustain.eval.shards import run_shard
cfg = EvalConfig(**json.loads(sys.argv[1]))
rank, world, sync = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
run_eval(dataclasses.replace(cfg, out=f"{cfg.out}-warmup-{rank}", limit=2))
open(os.path.join(sync, f"ready-{rank}"), "w").close()
while not os.path.exists(os.path.join(sync, "go")):
    time.sleep(0.005)
run_eval(cfg) if world == 1 else run_shard(cfg, rank, world)
"""


def timed_ranks(cfg: dict, world: int, sync: Path) -> float:
    """Seconds from the barrier to the merged records (merge included), start-up excluded."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    sync.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(cfg), str(rank), str(world), str(sync)], env=env)
             for rank in range(world)]
    try:
        while len(list(sync.glob("ready-*"))) < world:
            if any(p.poll() for p in procs):
                raise SystemExit("a rank failed before the barrier")
            time.sleep(0.005)
        start = time.perf_counter()
        (sync / "go").touch()
        if any(p.wait() for p in procs):
            raise SystemExit("a rank failed")
    finally:  # a failed rank must not leave the others polling for `go` forever
        for p in procs:
            if p.poll() is None:
                p.kill()
    if world > 1:
        merge_shards(EvalConfig(**cfg), world)
    return time.perf_counter() - start


def records(out: Path) -> dict[str, list[dict]]:
    """Record files in file order, without `batch` (the batch layout, which shards change by design)."""
    files = {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted(out.glob("*.jsonl"))}
    return {name: [{k: v for k, v in rec.items() if k != "batch"} for rec in recs] for name, recs in files.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the cached tiny base model)")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    model = args.model
    if model is None:
        from sustain.train.tiny import ensure_tiny_base

        model = str(ensure_tiny_base(Path(os.environ.get("SUSTAIN_CACHE_DIR", ROOT / ".cache")) / "tiny-models"))
    with tempfile.TemporaryDirectory() as tmp:
        base = dict(model=model, tasks=["arith"], limit=args.items, k_max=2, max_new_tokens=args.max_new_tokens,
                    batch_size=8)
        # rank 0 (this process) merges: an untimed 2-item run first loads what merging imports, as an
        # earlier checkpoint's eval has in a training job
        timed_ranks({**base, "limit": 2, "out": f"{tmp}/warmup"}, args.ranks, Path(tmp, "sync-warmup"))
        one = timed_ranks({**base, "out": f"{tmp}/one"}, 1, Path(tmp, "sync-one"))
        many = timed_ranks({**base, "out": f"{tmp}/many"}, args.ranks, Path(tmp, "sync-many"))
        same = records(Path(tmp, "one")) == records(Path(tmp, "many"))
    print(json.dumps({"ranks": args.ranks, "items": args.items, "rank0_alone_s": round(one, 2),
                      "all_ranks_s": round(many, 2), "ratio": round(many / one, 3), "records_identical": same}))


if __name__ == "__main__":
    main()
