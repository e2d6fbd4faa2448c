"""The demo's paradigms over several training seeds: the spread of the final SustainScore.

One demo run per seed (`sustain demo --seed S`, the same cached base model, the same recipes); each
paradigm's final SustainScore is read from that run's report.json. Prints one markdown table (the
README's) and writes the numbers as JSON. CPU-heavy (three trainings and ~13 evals per seed): run it
niced, once.

    nice -n 10 .venv/bin/python benchmarks/bench_demo_seeds.py --seeds 0,1,2 --out runs/bench-demo-seeds
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


CELL = "arith/hard"  # the demo's one headline cell: arith, hard constraints, k = 1


def _numbers(checkpoint: dict) -> dict:
    cell = checkpoint["cells"][CELL]
    return {"step": checkpoint["step"], **{k: cell["score"].get(k) for k in ("value", "lo", "hi", "n")},
            "control": cell["control"].get("value"), "accuracy": (cell.get("accuracy") or {}).get("value")}


def final_scores(report_json: Path) -> dict[str, dict]:
    """paradigm -> {"step", "value", "lo", "hi", "n", "control", "accuracy"} of the arith/hard cell
    (SustainScore at k = 1) at its last finished checkpoint."""
    report = json.loads(report_json.read_text())
    out = {name: _numbers(final) for name, final in report["final"].items() if final is not None}
    if report.get("base"):
        out["base"] = _numbers(report["base"])
    return out


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"n_seeds": 0, "mean": None, "sd": None, "min": None, "max": None}
    return {"n_seeds": len(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None, "min": min(values), "max": max(values)}


def table(per_seed: dict[int, dict], summary: dict) -> str:
    seeds = sorted(per_seed)
    rows = ["| paradigm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd [min, max] |",
            "|---|" + "---|" * (len(seeds) + 1)]
    for name, s in summary.items():
        cells = []
        for seed in seeds:
            score = per_seed[seed].get(name) or {}
            cells.append("n/a" if score.get("value") is None else f"{score['value']:.3f} (acc {score['accuracy']:.3f})")
        sd = "" if s["sd"] is None else f" ± {s['sd']:.3f}"
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {s['mean']:.3f}{sd} [{s['min']:.3f}, {s['max']:.3f}] |"
                    if s["mean"] is not None else f"| {name} | " + " | ".join(cells) + " | n/a |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (at least 3 for a spread)")
    parser.add_argument("--out", default="runs/bench-demo-seeds", help="one demo folder per seed goes under it")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick stages (a smoke test, not a measurement)")
    args = parser.parse_args()
    from sustain.train.demo import run_demo

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out)
    per_seed, seconds = {}, {}
    for seed in seeds:
        start = time.perf_counter()
        md = run_demo(out / f"seed-{seed}", quick=args.quick, seed=seed)
        seconds[seed] = round(time.perf_counter() - start, 1)
        per_seed[seed] = final_scores(md.parent / "report.json")
    names = sorted({n for scores in per_seed.values() for n in scores})
    summary = {n: spread([per_seed[s].get(n, {}).get("value") for s in seeds]) for n in names}
    result = {"seeds": seeds, "per_seed": per_seed, "spread": summary, "seconds": seconds, "quick": args.quick}
    (out / "demo_seeds.json").write_text(json.dumps(result, indent=2))
    print(table(per_seed, summary))
    print(f"\nwall seconds per seed: {seconds}; numbers: {out / 'demo_seeds.json'}")


if __name__ == "__main__":
    main()
