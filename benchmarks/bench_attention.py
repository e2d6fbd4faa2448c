"""Span-reduced attention vs eager output_attentions=True on one 2,048-token sequence, tiny 8-layer model.

Goals: peak memory <= 1/8 of eager output_attentions, time <= 1.5x a plain sdpa forward pass.
Memory: each variant in its own process, peak RSS (getrusage) minus the RSS just before the call, so
model weights and the torch runtime are not counted. Time: one process, variants interleaved, best of
--repeats, so load from other processes on a shared machine hits all variants alike.

    .venv/bin/python benchmarks/bench_attention.py [--prompt 512 --output 1536 --repeats 5 --threads 1]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("plain", "eager_output_attentions", "span_reduced")


def build(prompt_tokens: int, output_tokens: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 512, (prompt_tokens + output_tokens,)).tolist()
    return model, ids[:prompt_tokens], ids[prompt_tokens:]


def setup(variant: str, prompt_tokens: int, output_tokens: int):
    """A callable that runs `variant` once on the benchmark sequence."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sustain.eval.attention.reduce import span_attention_ids
    from sustain.eval.attention.span import TokenSpan

    model, prompt, output = build(prompt_tokens, output_tokens)
    span = TokenSpan(prompt, prompt_tokens - 40, prompt_tokens - 10)  # a constraint near the prompt's end
    input_ids = torch.tensor([prompt + output])
    if variant == "eager_output_attentions":
        model.set_attn_implementation("eager")

    def once():
        with torch.no_grad():
            if variant == "span_reduced":
                return span_attention_ids(model, [span], [output])
            return model(input_ids, use_cache=False, logits_to_keep=1, output_attentions=variant != "plain")

    return once


def peak_memory(variant: str, prompt_tokens: int, output_tokens: int) -> float:
    """MiB above the RSS just before the call; run in a fresh process per variant."""
    import psutil

    once = setup(variant, prompt_tokens, output_tokens)
    before = psutil.Process().memory_info().rss
    once()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / 2**20  # Linux: KiB


def timings(prompt_tokens: int, output_tokens: int, repeats: int) -> dict:
    """Best-of-`repeats` seconds per variant, the variants interleaved so machine load hits them alike."""
    runs = {v: setup(v, prompt_tokens, output_tokens) for v in VARIANTS}
    best = {v: float("inf") for v in VARIANTS}
    for _ in range(repeats):
        for variant, once in runs.items():
            start = time.perf_counter()
            once()
            best[variant] = min(best[variant], time.perf_counter() - start)
    return best


def child(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if args.variant == "timings":
        return timings(args.prompt, args.output, args.repeats)
    return {"peak_mib": peak_memory(args.variant, args.prompt, args.output)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--output", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", choices=(*VARIANTS, "timings"), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(child(args)))
        return

    def run_child(variant: str) -> dict:
        cmd = [sys.executable, __file__, "--variant", variant, "--prompt", str(args.prompt), "--output",
               str(args.output), "--repeats", str(args.repeats), "--threads", str(args.threads)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    memory = {v: run_child(v)["peak_mib"] for v in VARIANTS}
    seconds = run_child("timings")
    for v in VARIANTS:
        print(f"{v:>24}: peak +{memory[v]:7.1f} MiB, best of {args.repeats}: {seconds[v]:.3f} s")
    memory_ratio = memory["span_reduced"] / memory["eager_output_attentions"]
    time_ratio = seconds["span_reduced"] / seconds["plain"]
    print(f"sequence {args.prompt}+{args.output} tokens, 8 layers, {args.threads} torch thread(s)")
    print(f"memory span_reduced / eager output_attentions = {memory_ratio:.3f} (goal <= 0.125)")
    print(f"time   span_reduced / plain sdpa forward      = {time_ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
