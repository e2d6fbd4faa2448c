"""Prefix reuse for the constrained re-run: the hf backend with prefix reuse (each shared prompt prefix
prefilled once per batch, its KV cache copied to the rows that share it: eval/generators/prefix_reuse.py)
vs without it (every full prompt prefilled, left-padded), on the constrained stage's prompt shape.

Per item: the control prompt (the question alone) and k = 1..K constraints appended after the question,
generated in one call at the pipeline's batch size, as the pipeline queues them. Rounds are
interleaved; the report is the median of per-round ratios (reuse / without) and whether greedy
outputs are identical.

    nice -n 5 .venv/bin/python benchmarks/bench_prefix_reuse.py --task hotpotqa --items 4 --k-max 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from sustain.eval.config import EvalConfig
from sustain.eval.generators import SamplingConfig
from sustain.eval.generators.hf import PREFIX_REUSE_MIN_TOKENS, HFGenerator
from sustain.eval.generators.prefix_reuse import order_by_prefix, reuses, shared_length
from sustain.eval.tasks import open_task
from sustain.real_model import FETCH_COMMAND, gguf_path

from bench_cpu_generation import shared_data  # noqa: E402  (this folder is on sys.path when run as a script)

# IFEval-style instructions like those the hard extractor renders; only their length matters here
CONSTRAINTS = ["Answer in at most 80 words.", 'Include the keyword "evidence" in your response.',
               'End your response with the exact phrase "Is there anything else I can help with?"']


def variants(task_name: str, n: int, k_max: int) -> list[list[list[dict]]]:
    """Per item, the control conversation and the constrained ones for k = 1..k_max."""
    task = open_task(task_name, EvalConfig(model="-", tasks=[task_name], data=shared_data()))
    try:
        items = task.load("test", n)  # hotpotqa maps "test" to its validation split
        return [[task.messages(it)] + [task.messages(it, constraint="\n".join(CONSTRAINTS[:k])) for k in range(1, k_max + 1)]
                for it in items]
    finally:
        task.close()


def timed(gen: HFGenerator, convs: list[list[dict]], cfg: SamplingConfig, min_tokens: int | None) -> tuple[list[str], float]:
    gen.prefix_reuse_min_tokens = min_tokens
    started = time.perf_counter()
    texts = [g.text for g in gen.generate(convs, cfg)]
    return texts, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help=f"model (default: the real model, {FETCH_COMMAND})")
    p.add_argument("--task", default="hotpotqa")
    p.add_argument("--items", type=int, default=4)
    p.add_argument("--k-max", type=int, default=2)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--min-tokens", type=int, default=PREFIX_REUSE_MIN_TOKENS, help="shortest shared prefix reused")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    gen = HFGenerator(a.model or str(gguf_path()), device="cpu", dtype="float32")
    convs = [c for group in variants(a.task, a.items, a.k_max) for c in group]
    cfg = SamplingConfig(max_new_tokens=a.tokens, temperature=0.0, batch_size=a.batch_size)
    rows = gen.token_rows([gen.prompt_text(c) for c in convs])
    groups = order_by_prefix(rows, a.min_tokens)[1]
    if not reuses(groups):
        print(f"no prompts share {a.min_tokens} leading tokens: both runs below take the plain path")
    timed(gen, convs[:1], cfg, None)  # warm-up: one-time costs out of round 1
    t_reuse, t_plain = [], []
    for r in range(a.rounds):
        out_p, t = timed(gen, convs, cfg, None)
        t_plain.append(t)
        out_r, t = timed(gen, convs, cfg, a.min_tokens)
        t_reuse.append(t)
        print(f"round {r + 1}: without {t_plain[-1]:.1f} s, reuse {t_reuse[-1]:.1f} s", flush=True)
    load = os.getloadavg()
    ratios = [x / y for x, y in zip(t_reuse, t_plain)]
    same = sum(x.strip() == y.strip() for x, y in zip(out_r, out_p))
    group = a.k_max + 1
    shared = sum(min(shared_length(rows[i], rows[j]) for j in range(i + 1, i + group)) for i in range(0, len(rows), group))
    print(f"\n{a.task}: {a.items} items x (control + k=1..{a.k_max}) = {len(convs)} prompts, {sum(map(len, rows))} prompt "
          f"tokens, the items' shared prefixes {shared} tokens (counted once per item); {len(set(groups))} prefix groups "
          f"(min {a.min_tokens} tokens), {a.tokens} new tokens, "
          f"batch {a.batch_size}, {torch.get_num_threads()} threads, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    print(f"constrained stage with reuse / without: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); greedy outputs identical: {same}/{len(convs)}")


if __name__ == "__main__":
    main()
