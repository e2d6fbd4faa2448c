"""Baseline stage vs lm-evaluation-harness's GSM8K task: same tiny model, items, max tokens, batch size.

Both read the local GSM8K test file, decode greedily with the chat template, zero-shot. Prints the
time ratio ours / lm-eval (goal <= 1.0). Needs `pip install -e '.[bench]'` (lm-eval).

    .venv/bin/python benchmarks/bench_vs_lm_eval.py [--items 64] [--max-new-tokens 128] [--batch-size 16]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"

TASK_YAML = """\
include: {gsm8k_yaml}
task: gsm8k_local
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    test: {data}
    train: {data}
num_fewshot: 0
generation_kwargs:
  until: ["<|end|>"]
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_new_tokens}
"""


def time_ours(model: str, items: int, max_new_tokens: int, batch_size: int) -> float:
    from sustain.eval.config import EvalConfig
    from sustain.eval.generators import make_generator
    from sustain.eval.pipeline import Pipeline

    gen = make_generator("hf", model=model)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = EvalConfig(model=model, tasks=["gsm8k"], data={"gsm8k": str(GSM8K)}, limit=items, out=tmp,
                         max_new_tokens=max_new_tokens, batch_size=batch_size)
        pipe = Pipeline(cfg, generator=gen)
        started = time.perf_counter()
        pipe.baseline()  # generate + grade + write records
        return time.perf_counter() - started


def time_lm_eval(model: str, items: int, max_new_tokens: int, batch_size: int) -> float:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    gsm8k_yaml = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    lm = HFLM(pretrained=model, batch_size=batch_size, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "gsm8k_local.yaml").write_text(
            TASK_YAML.format(gsm8k_yaml=gsm8k_yaml, data=GSM8K, max_new_tokens=max_new_tokens))
        manager = TaskManager(include_path=tmp)
        started = time.perf_counter()
        lm_eval.simple_evaluate(model=lm, tasks=["gsm8k_local"], limit=items, task_manager=manager,
                                apply_chat_template=True, log_samples=True, bootstrap_iters=0)
        return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="model folder (default: the cached tiny base model)")
    p.add_argument("--items", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args()
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        sys.exit("lm-eval is not installed: pip install -e '.[bench]'")
    if a.model is None:
        from sustain.train.tiny import ensure_tiny_base

        a.model = str(ensure_tiny_base(ROOT / ".cache" / "tiny-models"))
    ours = time_ours(a.model, a.items, a.max_new_tokens, a.batch_size)
    theirs = time_lm_eval(a.model, a.items, a.max_new_tokens, a.batch_size)
    print(f"GSM8K baseline, {a.items} items, max_new_tokens={a.max_new_tokens}, batch={a.batch_size}")
    print(f"  sustain baseline stage: {ours:.2f} s")
    print(f"  lm-eval gsm8k:          {theirs:.2f} s")
    print(f"  ratio ours/lm-eval:     {ours / theirs:.3f}  (goal <= 1.0)")


if __name__ == "__main__":
    main()
