"""The suite's real-model benchmark: SmolLM2-135M-Instruct (GGUF from `make real-model`) through the
whole pipeline on GSM8K (200 items), HotpotQA (the 103 local items) and HumanEval (164 problems).

    make real-model
    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python benchmarks/bench_real_model.py run --root /work/bench-real
    .venv/bin/python benchmarks/bench_real_model.py report --root /work/bench-real --out benchmarks/results/real_model.md

Two independent parts:
- `run` generates: one run folder per task under --root (baseline -> hard constraints k = 1, 2 ->
  constrained -> attention), resumable (rerun the same command after a kill), and logs every
  generate call's wall time and token count to <task>/bench_generation.jsonl and every session to
  bench_sessions.jsonl. Tasks run cheapest prompts first, so a cut-short run has whole tasks.
- `report` reads only the records: it rebuilds each summary.json with the current summary code and
  writes the markdown table, so grading or summary changes need no regeneration.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUSTAIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
# task -> (items, max new tokens, local data or None for the packaged set). HotpotQA's answer is
# one short line, and its ~1,500-token prompts make prefill the cost, so it gets a small budget.
PLAN = {
    "gsm8k": (200, 256, SHARED / "gsm8k" / "test.jsonl"),
    "humaneval": (164, 256, None),
    "hotpotqa": (103, 96, SHARED / "hotpotqa" / "dev_distractor_first103.jsonl"),
}
K_MAX = 2
SESSIONS = "bench_sessions.jsonl"
GENERATION_LOG = "bench_generation.jsonl"


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- generation ---------------------------------------------------------------------------------
def timed_generator(model: str, dtype: str):
    from sustain.eval.generators.hf import HFGenerator

    class TimedGenerator(HFGenerator):
        """HFGenerator that logs each generate call (wall time, prompts, generated tokens) to `log`."""

        log: Path | None = None

        def generate(self, conversations, cfg):
            start = time.monotonic()
            gens = super().generate(conversations, cfg)
            if self.log is not None:
                _append(self.log, {"at": _now(), "wall_s": time.monotonic() - start, "prompts": len(gens),
                                   "tokens": sum(g.n_tokens for g in gens), "batch_size": cfg.batch_size})
            return gens

    return TimedGenerator(model, device="cpu", dtype=dtype)


def _check_settings(root: Path, settings: dict) -> None:
    """The dtype changes outputs but is not part of a run folder's identity: refuse to mix two."""
    path = root / "bench_settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            sys.exit(f"sustain: error: {root} was generated with {before}, not {settings} "
                     "(fix: pass the same --dtype, or choose a new --root)")
    path.write_text(json.dumps(settings) + "\n")


def run(args) -> None:
    import torch

    from sustain.eval.config import EvalConfig
    from sustain.eval.pipeline import Pipeline
    from sustain.real_model import FETCH_COMMAND, gguf_path

    torch.set_num_threads(args.threads)
    model = Path(args.model) if args.model else gguf_path()
    if not model.is_file():
        sys.exit(f"sustain: error: real model not found at {model} (fix: run `{FETCH_COMMAND}`)")
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    _check_settings(root, {"dtype": args.dtype})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` still logs the session's end
    load_start = time.monotonic()
    gen = timed_generator(str(model), args.dtype)
    _append(root / SESSIONS, {"event": "model_loaded", "at": _now(), "wall_s": time.monotonic() - load_start,
                              "model": str(model), "dtype": args.dtype, "threads": args.threads})
    for task in args.tasks:
        limit, max_new, data = PLAN[task]
        limit = min(limit, args.limit) if args.limit is not None else limit
        cfg = EvalConfig(model=str(model), tasks=[task], out=str(root / task), limit=limit,
                         data={task: str(data)} if data else {}, families=["hard"], k_max=K_MAX,
                         max_new_tokens=max_new, batch_size=args.batch_size, attention=True,
                         sandbox_workers=1)
        gen.log = root / task / GENERATION_LOG
        start = time.monotonic()
        _append(root / SESSIONS, {"event": "start", "task": task, "at": _now()})
        status = "interrupted"  # until the pipeline returns (a kill leaves it so)
        try:
            (root / task).mkdir(exist_ok=True)
            Pipeline(cfg, gen).run()
            status = "complete"
        except Exception as exc:  # the records written so far stay; the report says what is missing
            status = f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"{task}: {status}", file=sys.stderr)
        finally:
            _append(root / SESSIONS, {"event": "end", "task": task, "at": _now(), "status": status,
                                      "wall_s": time.monotonic() - start})


# -- report (records only) ----------------------------------------------------------------------
def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: the pipeline skips it too
            pass
    return out


def _fmt(score: dict | None) -> str:
    if not score:
        return "-"
    if score.get("value") is None:
        return f"undefined ({score.get('reason', 'no data')}), n={score.get('n', 0)}"
    return f"{score['value']:.3f} [{score['lo']:.3f}, {score['hi']:.3f}] n={score['n']}"


def _progress(folder: Path, task: str) -> dict:
    base = _rows(folder / "baseline.jsonl")
    solved = sum(1 for r in base if r.get("success"))
    extracted = _rows(folder / "constraints.jsonl")
    constrained = _rows(folder / "constrained.jsonl")
    attention = _rows(folder / "attention.jsonl")
    gens = _rows(folder / GENERATION_LOG)
    return {"planned": PLAN[task][0], "baseline": len(base), "solved": solved, "extracted": len(extracted),
            "constrained": len(constrained), "attention": len(attention),
            "gen_wall_s": sum(g["wall_s"] for g in gens), "gen_tokens": sum(g["tokens"] for g in gens),
            "truncated": sum(1 for r in base if r.get("finish_reason") == "length")}


def regraded_copy(folder: Path, task_name: str) -> tuple[Path, int]:
    """<folder>/regraded: the run's records with every verdict re-read by the CURRENT grader (graders
    change; the generations do not), so the report needs no regeneration. Returns it and how many
    verdicts changed. Constrained runs exist only for items solved under the grader of the day."""
    import dataclasses
    import shutil

    from sustain.eval.config import EvalConfig
    from sustain.eval.records import write_json_atomic
    from sustain.eval.tasks import open_task

    meta = json.loads((folder / "run.json").read_text())
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    cfg = EvalConfig(**{k: v for k, v in meta["config"].items() if k in names})
    task = open_task(task_name, cfg)
    dest = folder / "regraded"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    changed = 0
    try:
        items = {it.id: it for it in task.load(cfg.split, cfg.limit)}
        for name in ("baseline.jsonl", "constrained.jsonl"):
            rows = [r for r in _rows(folder / name) if r["item_id"] in items]
            gens = [types.SimpleNamespace(text=r["output"], finish_reason=r["finish_reason"]) for r in rows]
            grades = task.grade_generations([items[r["item_id"]] for r in rows], gens) if rows else []
            with open(dest / name, "w", encoding="utf-8") as fh:
                for r, g in zip(rows, grades):
                    changed += bool(g.success) != bool(r.get("success"))
                    fh.write(json.dumps({**r, **g.to_dict()}) + "\n")
    finally:
        task.close()
    write_json_atomic(dest / "run.json", meta)
    for name in ("constraints.jsonl", "attention.jsonl", "attention_summary.json"):
        if (folder / name).is_file():
            shutil.copy(folder / name, dest / name)
    return dest, changed


def _stage_state(p: dict, summary_ok: bool) -> str:
    if p["baseline"] < p["planned"]:
        return f"baseline {p['baseline']}/{p['planned']}"
    if p["extracted"] < p["solved"]:
        return f"constraints {p['extracted']}/{p['solved']}"
    if p["attention"] < p["constrained"]:
        return f"attention {p['attention']}/{p['constrained']}"
    return "complete" if summary_ok else "records complete, summary failed"


def report(args) -> str:
    from sustain.eval.summary import write_summary

    root = Path(args.root)
    sessions = _rows(root / SESSIONS)
    lines = ["# Real-model benchmark: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)", "",
             f"Written {_now()} by `benchmarks/bench_real_model.py report` from the records in `{root}`.",
             "Hard constraints only (k = 1 and 2), greedy decoding, seed 0, attention on the constrained runs.",
             "Intervals are 95% (Wilson, or a cluster bootstrap where an item has several records).", ""]
    loaded = [s for s in sessions if s.get("event") == "model_loaded"]
    if loaded:
        s = loaded[-1]
        lines += [f"Model `{Path(s['model']).name}`, dtype {s['dtype']}, {s['threads']} torch threads, "
                  f"CPU (2 cores, niced; the sessions log says when each task ran).", ""]
    table = ["| task | stage | accuracy (baseline) | SustainScore k=1 | SustainScore k=2 | follow rate "
             "| attention gap (failed - solved) | wall (generation) | generated tok/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    details = []
    for task in PLAN:
        folder = root / task
        if not (folder / "run.json").is_file():
            table.append(f"| {task} | not started | - | - | - | - | - | - | - |")
            continue
        p = _progress(folder, task)
        try:
            regraded, changed = regraded_copy(folder, task)
            summary, summary_ok = write_summary(regraded), True
            details.append(f"- {task}: {changed} verdicts differ between generation time and the current grader "
                           "(the table uses the current one)")
        except Exception as exc:  # noqa: BLE001  (the table still shows the progress)
            summary, summary_ok = {}, False
            details.append(f"- {task}: summary failed: {type(exc).__name__}: {exc}")
        sustain = summary.get("sustain", {})
        headline = ((sustain.get("headline") or {}).get(task) or {}).get("hard")  # the k=1 headline, if reported
        scale = (((sustain.get("scale") or {}).get(task) or {}).get("hard") or {}).get("by_k", {})
        by_k = {**({"k1": headline} if headline else {}), **({"k2": scale["k2"]} if "k2" in scale else {})} \
            or sustain.get("by_k", {})  # older summaries: one pooled by_k
        if headline and "follow_rate" in headline:
            summary.setdefault("follow_rate", headline["follow_rate"])
        gap = (summary.get("attention") or {}).get("gap")
        tps = p["gen_tokens"] / p["gen_wall_s"] if p["gen_wall_s"] else 0.0
        overall = sustain.get("overall") or headline or {}
        no_score = _fmt(overall) if summary_ok and overall.get("value") is None else "-"  # the reason, once
        k1, k2 = (_fmt(by_k[k]) if k in by_k else no_score for k in ("k1", "k2"))
        gap_cell = _fmt(gap) if gap else "not run (no constrained records)" if summary_ok else "-"
        table.append(f"| {task} | {_stage_state(p, summary_ok)} | {_fmt(summary.get('accuracy'))} | {k1} | "
                     f"{k2} | {_fmt(summary.get('follow_rate'))} | {gap_cell} | "
                     f"{p['gen_wall_s'] / 60:.1f} min | {tps:.1f} |")
        failures = summary.get("failures") or {}
        details.append(f"- {task}: {p['baseline']} baseline records ({p['truncated']} cut at the token limit of "
                       f"{PLAN[task][1]}), {p['solved']} solved, {p['constrained']} constrained records, "
                       f"{p['attention']} attention records, {p['gen_tokens']} generated tokens; failure classes of "
                       f"constrained runs: {json.dumps(failures) if failures else 'none'}")
    walls = [s["wall_s"] for s in sessions if s.get("event") == "end"]
    first = next((s["at"] for s in sessions), "-")
    last = sessions[-1]["at"] if sessions else "-"
    lines += table + ["", "Per task:", *details, "",
                      f"Sessions: {len([s for s in sessions if s.get('event') == 'model_loaded'])} (first {first}, last "
                      f"event {last}); pipeline wall time {sum(walls) / 60:.1f} min over finished or stopped task runs.",
                      "", "Caveats: a 135M model solves few items, so SustainScore and the attention gap rest on small n "
                      "and have wide intervals; a task whose stage is not `complete` is a partial result."]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="generate (resumable)")
    r.add_argument("--root", default="runs/bench-real")
    r.add_argument("--model", default=None, help="the .gguf (default: the one `make real-model` fetched)")
    r.add_argument("--tasks", type=lambda s: s.split(","), default=list(PLAN))
    r.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--limit", type=int, default=None,
                   help="at most this many items per task (a cut-down run; a larger limit later extends the same folders)")
    p = sub.add_parser("report", help="markdown report from the records")
    p.add_argument("--root", default="runs/bench-real")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_model.md"))
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.limit is not None and args.limit < 1:
            parser.error(f"--limit must be at least 1, got {args.limit}")
        run(args)
    else:
        print(report(args))


if __name__ == "__main__":
    main()
