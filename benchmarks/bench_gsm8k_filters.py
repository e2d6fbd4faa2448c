"""Our GSM8K filters vs lm-evaluation-harness's, on the same outputs: how often the verdicts agree.

lm-eval's side is its own code and task YAMLs as installed (`pip install -e '.[bench]'`): the
filter_list of `gsm8k` ("#### N" strict-match) and of `gsm8k_cot_zeroshot` ("The answer is N."
strict-match, the format this project's GSM8K prompt asks for), each with its flexible-extract
(last number), and the exact_match metric with the YAML's settings. Our side is GSM8KTask.grade's
detail["filters"] (strict-match: only a stated answer; flexible-extract: the last number) and its
final verdict. Outputs:
  real       the 66 GSM8K outputs of SmolLM2-135M-Instruct in tests/fixtures/real_outputs
  gold       the 1,319 GSM8K test solutions as written ("... #### N")
  instructed the same solutions ending "The answer is N." instead of "#### N"
  altered    the instructed ones with the final number changed to N+1 (all wrong)

    .venv/bin/python benchmarks/bench_gsm8k_filters.py [--gsm8k ../shared/data/gsm8k/test.jsonl]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from fractions import Fraction
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "real_outputs" / "smollm2-135m-instruct.jsonl"
LM_EVAL_TASKS = {"gsm8k": "gsm8k.yaml", "gsm8k_cot_zeroshot": "gsm8k-cot-zeroshot.yaml"}
# The lm-eval task whose strict-match expects each set's format (ours takes any stated answer).
FORMAT_TASKS = {"real": ["gsm8k_cot_zeroshot"], "gold": ["gsm8k"], "instructed": ["gsm8k_cot_zeroshot"],
                "altered": ["gsm8k_cot_zeroshot"]}


def lm_eval_task(filename: str) -> dict:
    import lm_eval

    return yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / filename).read_text())


def lm_eval_verdicts(task: dict, outputs: list[str], targets: list[str]) -> dict[str, list[tuple[str, bool]]]:
    """{filter name: [(filtered answer, exact_match)]} as lm-eval computes them for these outputs."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.api.registry import get_filter
    from lm_eval import filters  # noqa: F401  (registers the regex and take_first filters)

    metric = next(m for m in task["metric_list"] if m["metric"] == "exact_match")
    settings = {k: metric[k] for k in ("regexes_to_ignore", "ignore_case", "ignore_punctuation") if k in metric}
    out = {}
    for flt in task["filter_list"]:
        resps = [[o] for o in outputs]
        for step in flt["filter"]:
            kwargs = {k: v for k, v in step.items() if k != "function"}
            resps = list(get_filter(step["function"])(**kwargs).apply(resps, [{}] * len(outputs)))
        answers = [r if isinstance(r, str) else r[0] for r in resps]
        out[flt["name"]] = [(_normalised(a, settings), bool(exact_match_hf_evaluate([a], [t], **settings)["exact_match"]))
                            for a, t in zip(answers, targets)]
    return out


def _normalised(answer: str, settings: dict) -> str | None:
    """lm-eval's filtered answer after its metric's ignore-regexes; None for its "[invalid]" fallback."""
    if answer == "[invalid]":
        return None
    for pattern in settings.get("regexes_to_ignore", []):
        answer = re.sub(pattern, "", answer)
    return answer


def same_value(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return Fraction(a.replace(",", "")) == Fraction(b.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return a.strip() == b.strip()


def output_sets(gsm8k_path: Path) -> dict[str, list[dict]]:
    """name -> [{output, gold, solution, finish_reason}]."""
    from sustain.eval.tasks.gsm8k import GSM8KTask

    items = GSM8KTask(data=str(gsm8k_path)).load()
    real = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    by_id = {it.id: it for it in items}
    head = lambda it: it.meta["solution"].rpartition("####")[0].rstrip()
    sets = {
        "real": [{"output": r["output"], "gold": r["gold"], "solution": by_id[r["item_id"]].meta["solution"],
                  "finish_reason": r["finish_reason"]} for r in real if r["task"] == "gsm8k"],
        "gold": [{"output": it.meta["solution"], "gold": it.gold, "solution": it.meta["solution"]} for it in items],
        "instructed": [{"output": f"{head(it)}\nThe answer is {it.gold}.", "gold": it.gold,
                        "solution": it.meta["solution"]} for it in items],
        "altered": [{"output": f"{head(it)}\nThe answer is {int(it.gold) + 1}.", "gold": it.gold,
                     "solution": it.meta["solution"]} for it in items],
    }
    return sets


def ours(rows: list[dict]) -> list[dict]:
    """Per output: our filters' verdicts and answers, and our final verdict (with the cut rule)."""
    from sustain.eval.tasks.answers import last_number, stated_math_answer
    from sustain.eval.tasks.base import Item
    from sustain.eval.tasks.gsm8k import GSM8KTask
    from sustain.eval.tasks.reasoning import strip_reasoning

    task = GSM8KTask()

    class Gen:
        def __init__(self, r):
            self.text, self.finish_reason = r["output"], r.get("finish_reason", "stop")

    items = [Item(id=str(i), prompt="", gold=r["gold"]) for i, r in enumerate(rows)]
    grades = task.grade_generations(items, [Gen(r) for r in rows])
    out = []
    for r, g in zip(rows, grades):
        text = strip_reasoning(r["output"])
        out.append({"final": g.success, **g.detail["filters"],
                    "answers": {"strict-match": stated_math_answer(text).text, "flexible-extract": last_number(text).text}})
    return out


def wilson_text(k: int, n: int) -> str:
    from sustain.eval.scoring import wilson

    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gsm8k", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"))
    p.add_argument("--show", type=int, default=8, help="disagreements to print per comparison")
    a = p.parse_args()
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        sys.exit("lm-eval is not installed: pip install -e '.[bench]'")
    import lm_eval as le
    print(f"lm-eval {le.__version__}; comparisons: our filter vs lm-eval's filter of the same name")
    print("| outputs | lm-eval task | filter | n | verdicts agree [95% CI] | answers agree | solved: lm-eval / ours |")
    print("|---|---|---|---|---|---|---|")
    shown = []
    for set_name, rows in output_sets(Path(a.gsm8k)).items():
        mine = ours(rows)
        for task_name in FORMAT_TASKS[set_name]:
            theirs = lm_eval_verdicts(lm_eval_task(LM_EVAL_TASKS[task_name]), [r["output"] for r in rows],
                                      [r["solution"] for r in rows])
            for flt, verdicts in theirs.items():
                agree = [v == m[flt] for (_, v), m in zip(verdicts, mine)]
                same = sum(same_value(ans, m["answers"][flt]) for (ans, _), m in zip(verdicts, mine))
                print(f"| {set_name} | {task_name} | {flt} | {len(rows)} | {wilson_text(sum(agree), len(rows))} | "
                      f"{same}/{len(rows)} | {sum(v for _, v in verdicts)} / {sum(m[flt] for m in mine)} |")
                shown += [(set_name, task_name, flt, r["output"][-120:], ans, v, m["answers"][flt], m[flt])
                          for r, (ans, v), m in zip(rows, verdicts, mine)
                          if v != m[flt] or not same_value(ans, m["answers"][flt])][:a.show]
        print(f"| {set_name} | our final verdict (cut rule) | - | {len(rows)} | - | - | - / {sum(m['final'] for m in mine)} |")
    for set_name, task_name, flt, tail, ans, v, mine_ans, m in shown:
        print(f"\n[{set_name} / {task_name} / {flt}] lm-eval read {ans!r} -> {v}, ours read {mine_ans!r} -> {m}\n  ...{tail!r}")


if __name__ == "__main__":
    main()
