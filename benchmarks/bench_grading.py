"""Grading cost per item on the real GSM8K test set and HotpotQA dev sample, against a trivial
string-compare baseline timed in the same run.

Run: .venv/bin/python benchmarks/bench_grading.py   (data from ../shared/data or $SUSTAIN_SHARED_DATA)
The outputs graded are the gold solutions (GSM8K: full worked text ending '#### N'; HotpotQA: a
reasoning line plus 'Answer: X'), so every item goes through the full extraction and comparison.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from sustain.eval.tasks.answers import parse_math
from sustain.eval.tasks.gsm8k import GSM8KTask
from sustain.eval.tasks.hotpotqa import HotpotQATask

DATA = Path(os.environ.get("SUSTAIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REPEATS = 5


def per_item_us(fn, items, outputs, before=lambda: None) -> float:
    """Median over REPEATS of the microseconds per item of grading all items once."""
    runs = []
    for _ in range(REPEATS):
        before()
        start = time.perf_counter()
        for it, out in zip(items, outputs):
            fn(it, out)
        runs.append((time.perf_counter() - start) / len(items) * 1e6)
    return statistics.median(runs)


def string_compare(item, output) -> bool:
    return output.rstrip().endswith(str(item.gold))


def report(name, items, outputs, grade) -> None:
    assert all(grade(it, out).success for it, out in zip(items, outputs)), f"{name}: a gold output graded wrong"
    baseline = per_item_us(string_compare, items, outputs)
    cold = per_item_us(grade, items, outputs, before=parse_math.cache_clear)  # nothing parsed yet
    warm = per_item_us(grade, items, outputs)  # math-verify parses cached (re-grading the same outputs)
    print(f"{name} (n={len(items)}): string compare {baseline:.2f} us/item")
    print(f"  grade, cold caches: {cold:8.1f} us/item = {cold / baseline:7.0f}x baseline, {cold * len(items) / 1e3:.0f} ms for all")
    print(f"  grade, warm caches: {warm:8.1f} us/item = {warm / baseline:7.0f}x baseline")


def main() -> None:
    gsm8k = GSM8KTask(data=str(DATA / "gsm8k" / "test.jsonl"))
    items = gsm8k.load()
    report("GSM8K test", items, [it.meta["solution"] for it in items], gsm8k.grade)

    hotpot = HotpotQATask(data=str(DATA / "hotpotqa" / "dev_distractor_first103.jsonl"))
    items = hotpot.load()
    report("HotpotQA dev", items, [f"Both paragraphs name it.\nAnswer: {it.gold}" for it in items], hotpot.grade)


if __name__ == "__main__":
    main()
