"""Prefix reuse for the constrained re-run: compute the shared prompt prefix once per item and reuse its
KV cache (a copy per variant) vs today's batched generation of every full prompt.

The constrained prompts of one item (k = 1..K constraints appended after the question) share every
token up to the constraint. "reuse" runs the shared prefix once per item (batch 1), then each variant
from a deep copy of that DynamicCache (transformers takes only the uncached tokens); "batched" is the
hf backend's generate on all variants at the pipeline's batch size. Rounds are interleaved; the
report is the median of per-round ratios (reuse / batched) and whether greedy outputs are identical.

    nice -n 5 .venv/bin/python benchmarks/bench_prefix_reuse.py --task hotpotqa --items 2 --k-max 3
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from sustain.eval.config import EvalConfig
from sustain.eval.generators import SamplingConfig
from sustain.eval.generators.hf import HFGenerator
from sustain.eval.tasks import open_task
from sustain.real_model import FETCH_COMMAND, gguf_path

from bench_cpu_generation import shared_data  # noqa: E402  (this folder is on sys.path when run as a script)

# IFEval-style instructions like those the hard extractor renders; only their length matters here
CONSTRAINTS = ["Answer in at most 80 words.", 'Include the keyword "evidence" in your response.',
               'End your response with the exact phrase "Is there anything else I can help with?"']


def variants(task_name: str, n: int, k_max: int) -> list[list[list[dict]]]:
    """Per item, the constrained conversations for k = 1..k_max."""
    task = open_task(task_name, EvalConfig(model="-", tasks=[task_name], data=shared_data()))
    try:
        items = task.load("test", n)  # hotpotqa maps "test" to its validation split
        return [[task.messages(it, constraint="\n".join(CONSTRAINTS[:k])) for k in range(1, k_max + 1)] for it in items]
    finally:
        task.close()


def common_prefix(rows: list[list[int]]) -> int:
    n = min(map(len, rows)) - 1  # at least one token of each prompt is fed with the cache
    for i in range(n):
        if any(r[i] != rows[0][i] for r in rows):
            return i
    return n


def with_reuse(gen: HFGenerator, groups: list[list[list[dict]]], tokens: int) -> tuple[list[str], int, int]:
    """Greedy texts, shared prefix tokens, total prompt tokens."""
    from transformers import DynamicCache

    texts, shared, total = [], 0, 0
    for convs in groups:
        ids = [gen.tokenizer(gen.prompt_text(c), add_special_tokens=False)["input_ids"] for c in convs]
        n = common_prefix(ids)
        shared, total = shared + n, total + sum(map(len, ids))
        with torch.inference_mode():
            cache = DynamicCache(config=gen.model.config)
            gen.model(input_ids=torch.tensor([ids[0][:n]]), past_key_values=cache, use_cache=True)
            for row in ids:
                out = gen.model.generate(input_ids=torch.tensor([row]), attention_mask=torch.ones(1, len(row), dtype=torch.long),
                                         past_key_values=copy.deepcopy(cache), max_new_tokens=tokens, do_sample=False,
                                         temperature=None, top_p=None, top_k=None, pad_token_id=gen.tokenizer.pad_token_id)
                texts.append(gen.tokenizer.decode(out[0, len(row):], skip_special_tokens=True))
    return texts, shared, total


def batched(gen: HFGenerator, groups: list[list[list[dict]]], tokens: int, batch: int) -> list[str]:
    flat = [c for convs in groups for c in convs]
    return [g.text for g in gen.generate(flat, SamplingConfig(max_new_tokens=tokens, temperature=0.0, batch_size=batch))]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help=f"model (default: the real model, {FETCH_COMMAND})")
    p.add_argument("--task", default="hotpotqa")
    p.add_argument("--items", type=int, default=2)
    p.add_argument("--k-max", type=int, default=3)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    gen = HFGenerator(a.model or str(gguf_path()), device="cpu", dtype="float32")
    groups = variants(a.task, a.items, a.k_max)
    t_reuse, t_batch = [], []
    for r in range(a.rounds):
        started = time.perf_counter()
        out_b = batched(gen, groups, a.tokens, a.batch_size)
        t_batch.append(time.perf_counter() - started)
        started = time.perf_counter()
        out_r, shared, total = with_reuse(gen, groups, a.tokens)
        t_reuse.append(time.perf_counter() - started)
        print(f"round {r + 1}: batched {t_batch[-1]:.1f} s, reuse {t_reuse[-1]:.1f} s", flush=True)
    load = os.getloadavg()
    ratios = [x / y for x, y in zip(t_reuse, t_batch)]
    same = sum(x.strip() == y.strip() for x, y in zip(out_r, out_b))
    print(f"\n{a.task}: {a.items} items x k=1..{a.k_max} = {len(out_b)} prompts, {total} prompt tokens of which "
          f"{shared * a.k_max} are a shared prefix ({shared} computed once), {a.tokens} new tokens, batch {a.batch_size}, "
          f"{torch.get_num_threads()} threads, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    print(f"constrained stage with reuse / without: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); greedy outputs identical: {same}/{len(out_b)}")


if __name__ == "__main__":
    main()
