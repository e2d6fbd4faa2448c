"""CPU generation on the real model: the hf backend vs plain `model.generate`, then the settings
transformers offers on CPU vs today's default, as ratios measured in one run.

Variants run interleaved (A B C ... A B C ...) on the same prompts; each round's times are divided by
that round's default, and the medians of those ratios are reported (the machine is shared: absolute
times drift, ratios within a round much less). Greedy outputs are compared with the default's.

    make real-model
    nice -n 5 .venv/bin/python benchmarks/bench_cpu_generation.py [--items 16] [--tokens 32] [--rounds 3]

Variants (all greedy, the same prompts):
  hf        the project's backend (default settings: float32, batch 16, length-sorted)  <- reference
  plain     `model.generate` on the chat-templated prompts in their order, batch 16, no post-processing
  static    the backend with cache_implementation="static"
  compile   static cache + torch.compile of the forward (inductor; first call compiles, timed apart)
  bf16      the model cast to bfloat16 (where torch reports CPU bf16 support)
  threads1  torch.set_num_threads(1)
  batch8    batch size 8 instead of 16
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import torch

from sustain.eval.config import EvalConfig
from sustain.eval.generators import SamplingConfig
from sustain.eval.generators.hf import HFGenerator
from sustain.eval.tasks import open_task
from sustain.real_model import FETCH_COMMAND, gguf_path

SHARED = {"gsm8k": "gsm8k", "hotpotqa": "hotpotqa/dev_distractor_first103.jsonl"}


def shared_data() -> dict[str, str]:
    """The shared offline copies (SUSTAIN_SHARED_DATA, default /work/shared/data) where they exist."""
    root = Path(os.environ.get("SUSTAIN_SHARED_DATA", "/work/shared/data"))
    return {task: str(root / rel) for task, rel in SHARED.items() if (root / rel).exists()}


def conversations(task_name: str, n: int) -> list[list[dict]]:
    task = open_task(task_name, EvalConfig(model="-", tasks=[task_name], data=shared_data()))
    try:
        return [task.messages(it) for it in task.load("test", n)]
    finally:
        task.close()


def cpu_bf16_flags() -> str:
    """The CPU's native bfloat16 instructions (none: torch emulates bf16 math on float32 units)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ",".join(sorted(flags & {"avx512_bf16", "amx_bf16"})) or "none"


def plain_generate(gen: HFGenerator, convs: list[list[dict]], tokens: int, batch: int) -> list[list[int]]:
    """What a user writes without the suite: template, tokenize with left padding, generate, slice."""
    out_ids = []
    for start in range(0, len(convs), batch):
        prompts = [gen.prompt_text(c) for c in convs[start:start + batch]]
        enc = gen.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(gen.device)
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=tokens, do_sample=False, temperature=None, top_p=None,
                                     top_k=None, pad_token_id=gen.tokenizer.pad_token_id)
        out_ids += out[:, enc["input_ids"].shape[1]:].tolist()
    return out_ids


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help=f"model (default: the real model, {FETCH_COMMAND})")
    p.add_argument("--task", default="gsm8k")
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--tokens", type=int, default=32, help="max new tokens")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    p.add_argument("--variants", default="hf,plain,static,bf16,threads1,batch8",
                   help="comma list; 'compile' is opt-in (its first call compiles for minutes on a loaded CPU)")
    a = p.parse_args()
    model = a.model or str(gguf_path())
    gen = HFGenerator(model, device=a.device, dtype="float32")
    convs = conversations(a.task, a.items)
    threads = torch.get_num_threads()
    variants = a.variants.split(",")
    bf16_ok = cpu_bf16_flags()
    gen_bf16 = None
    if "bf16" in variants:
        gen_bf16 = copy.copy(gen)
        gen_bf16.model = copy.deepcopy(gen.model).to(torch.bfloat16)

    def backend(g: HFGenerator, batch: int = 16, **gen_kwargs):
        cfg = SamplingConfig(max_new_tokens=a.tokens, temperature=0.0, batch_size=batch)
        g.generate_options = gen_kwargs
        try:
            return [x.text for x in g.generate(convs, cfg)]
        finally:
            g.generate_options = {}

    def run(name: str):
        if name == "hf":
            return backend(gen)
        if name == "plain":
            return [gen.tokenizer.decode(ids, skip_special_tokens=True) for ids in plain_generate(gen, convs, a.tokens, 16)]
        if name == "static":
            return backend(gen, cache_implementation="static")
        if name == "compile":
            from transformers import CompileConfig

            cc = CompileConfig(dynamic=False)
            cc._compile_all_devices = True  # transformers compiles only on accelerators unless told
            return backend(gen, cache_implementation="static", compile_config=cc)
        if name == "bf16":
            return backend(gen_bf16)
        if name == "threads1":
            torch.set_num_threads(1)
            try:
                return backend(gen)
            finally:
                torch.set_num_threads(threads)
        if name == "batch8":
            return backend(gen, batch=8)
        raise SystemExit(f"unknown variant {name}")

    if "compile" in variants:  # compilation is a one-off cost: time it apart
        started = time.perf_counter()
        run("compile")
        print(f"compile warm-up (first call, compiles): {time.perf_counter() - started:.1f} s")
    run("hf")  # warm-up: first-call allocations
    times: dict[str, list[float]] = {v: [] for v in variants}
    outputs: dict[str, list[str]] = {}
    for r in range(a.rounds):
        for v in variants:
            started = time.perf_counter()
            outputs[v] = run(v)
            times[v].append(time.perf_counter() - started)
        print(f"round {r + 1}: " + ", ".join(f"{v} {times[v][-1]:.1f}s" for v in variants), flush=True)
    load = os.getloadavg()
    print(f"\n{a.task}, {a.items} prompts, {a.tokens} new tokens, {a.rounds} interleaved rounds, torch {torch.__version__}, "
          f"{threads} threads, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, native bf16 instructions: {bf16_ok}")
    print("variant    median s   median ratio to hf (time)   greedy outputs == hf")
    for v in variants:
        ratios = [t / h for t, h in zip(times[v], times["hf"])]
        same = sum(x == y for x, y in zip(outputs[v], outputs["hf"]))
        print(f"{v:10s} {statistics.median(times[v]):8.1f}   {statistics.median(ratios):.3f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})   {same}/{len(convs)}")
    if "plain" in times:
        speed = [pl / h for h, pl in zip(times["hf"], times["plain"])]  # speed is 1/time
        print(f"\nhf speed / plain model.generate speed (goal >= 0.95): median {statistics.median(speed):.3f}")


if __name__ == "__main__":
    main()
