"""Failed vs solved constrained generations: attention-to-constraint curves, intervals, test, plots.

Input records are dicts with task, item_id, condition, success (the constrained outcome), per_step
(mass per decoding step) and optionally per_layer (layers x steps). The unit of analysis is one
generation: every interval resamples generations (bootstrap, seeded), never decoding steps.
"""
from __future__ import annotations

import zlib
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from sustain.eval.errors import UserError  # noqa: E402

RELATIVE_BINS = 10
RESAMPLES = 2000
REQUIRED = ("task", "item_id", "condition", "success", "per_step")


def _rng(seed: int, salt: tuple[str, ...]) -> np.random.Generator:
    """A separate, reproducible stream per statistic, so adding one statistic never shifts another's interval."""
    return np.random.default_rng([seed, zlib.crc32("/".join(salt).encode())])


def mean_interval(values, seed: int = 0, salt: tuple[str, ...] = ()) -> dict:
    """Mean with a 95% percentile-bootstrap interval; the interval is None below two values."""
    values = np.asarray(values, dtype=float)
    out = {"n": int(values.size), "mean": float(values.mean()) if values.size else None, "low": None, "high": None}
    if values.size >= 2 and np.ptp(values) > 0:
        ci = stats.bootstrap(
            (values,), np.mean, n_resamples=RESAMPLES, method="percentile", rng=_rng(seed, salt)
        ).confidence_interval
        out["low"], out["high"] = float(ci.low), float(ci.high)
    elif values.size >= 2:  # all equal: the bootstrap distribution is a point
        out["low"] = out["high"] = out["mean"]
    return out


def gap_interval(failed, solved, seed: int = 0, salt: tuple[str, ...] = ()) -> dict:
    """mean(failed) - mean(solved) with a 95% bootstrap interval (groups resampled independently)."""
    failed, solved = np.asarray(failed, float), np.asarray(solved, float)
    if failed.size == 0 or solved.size == 0:
        empty = "failed" if failed.size == 0 else "solved"
        return {"value": None, "low": None, "high": None, "reason": f"no {empty} generations"}
    out = {"value": float(failed.mean() - solved.mean()), "low": None, "high": None, "reason": None}
    if failed.size >= 2 and solved.size >= 2:
        ci = stats.bootstrap(
            (failed, solved),
            lambda f, s, axis=-1: f.mean(axis=axis) - s.mean(axis=axis),
            n_resamples=RESAMPLES,
            method="percentile",
            rng=_rng(seed, ("gap", *salt)),
        ).confidence_interval
        out["low"], out["high"] = float(ci.low), float(ci.high)
    else:
        out["reason"] = "interval needs at least 2 generations per group"
    return out


def mann_whitney(failed, solved) -> dict:
    """One-sided Mann-Whitney U: are failed generations' mean attentions stochastically greater?"""
    if len(failed) == 0 or len(solved) == 0:
        empty = "failed" if len(failed) == 0 else "solved"
        return {"u": None, "p_value": None, "alternative": "greater", "reason": f"no {empty} generations"}
    result = stats.mannwhitneyu(failed, solved, alternative="greater")
    return {"u": float(result.statistic), "p_value": float(result.pvalue), "alternative": "greater", "reason": None}


def relative_bins(per_step: list[float], bins: int = RELATIVE_BINS) -> list[float | None]:
    """Mean per tenth of the generation (None for a bin no step falls in, i.e. generations under 10 steps)."""
    n = len(per_step)
    sums, counts = np.zeros(bins), np.zeros(bins)
    for s, value in enumerate(per_step):
        b = min(bins - 1, s * bins // n)
        sums[b] += value
        counts[b] += 1
    return [float(sums[b] / counts[b]) if counts[b] else None for b in range(bins)]


def _curve(columns: list[list[float | None]], seed: int, salt: tuple[str, ...]) -> list[dict]:
    """columns[g][x] -> per x, mean over generations that have a value there, with its interval."""
    width = max((len(c) for c in columns), default=0)
    return [
        mean_interval([c[x] for c in columns if x < len(c) and c[x] is not None], seed, (*salt, str(x)))
        for x in range(width)
    ]


def _group_summary(records: list[dict], metric: str, max_steps: int, seed: int, label: str) -> dict:
    groups = {"failed": [r for r in records if not r["success"]], "solved": [r for r in records if r["success"]]}
    means = {g: [float(np.mean(r[metric])) for r in rs] for g, rs in groups.items()}
    summary: dict = {
        "n": {g: len(rs) for g, rs in groups.items()},
        "mean": {g: mean_interval(means[g], seed, (label, g)) for g in groups},
        "gap": gap_interval(means["failed"], means["solved"], seed, (label,)),
        "mann_whitney": mann_whitney(means["failed"], means["solved"]),
        "absolute": {g: _curve([r[metric][:max_steps] for r in rs], seed, (label, g, "abs")) for g, rs in groups.items()},
        "relative": {},
        "relative_gap": [],
    }
    rel = {g: [relative_bins(r[metric]) for r in rs] for g, rs in groups.items()}
    for g in groups:
        summary["relative"][g] = _curve(rel[g], seed, (label, g, "rel"))
    for b in range(RELATIVE_BINS):
        failed = [v[b] for v in rel["failed"] if v[b] is not None]
        solved = [v[b] for v in rel["solved"] if v[b] is not None]
        summary["relative_gap"].append(gap_interval(failed, solved, seed, (label, "bin", str(b))))
    with_layers = [r for r in records if r.get("per_layer")]
    if with_layers:
        layer_means = {
            g: [np.asarray(r["per_layer"], float).mean(axis=1) for r in with_layers if bool(r["success"]) == (g == "solved")]
            for g in groups
        }
        layers = len(with_layers[0]["per_layer"])
        summary["per_layer"] = [
            {
                "layer": layer,
                **{g: mean_interval([m[layer] for m in layer_means[g]], seed, (label, g, str(layer))) for g in groups},
                "gap": gap_interval(
                    [m[layer] for m in layer_means["failed"]],
                    [m[layer] for m in layer_means["solved"]],
                    seed,
                    (label, "layer", str(layer)),
                ),
            }
            for layer in range(layers)
        ]
    return summary


def _validate(records: list[dict], metric: str) -> list[dict]:
    for r in records:
        missing = [k for k in (*REQUIRED, metric) if k not in r]
        if missing:
            raise UserError(
                f"attention record {r.get('task')}/{r.get('item_id')} lacks {', '.join(missing)}",
                f"give every record the keys {', '.join(REQUIRED)} (and {metric!r})",
            )
    return [r for r in records if len(r[metric]) > 0]


def _plot(name: str, summary: dict, metric: str, folder: Path) -> list[str]:
    paths = []
    colours = {"failed": "tab:red", "solved": "tab:blue"}
    for view, xlabel in (("absolute", "decoding step"), ("relative", "tenth of the generation")):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for g, curve in summary[view].items():
            xs = [x for x, c in enumerate(curve) if c["mean"] is not None]
            if not xs:
                continue
            ax.plot(xs, [curve[x]["mean"] for x in xs], color=colours[g], label=f"{g} (n={summary['n'][g]})")
            banded = [x for x in xs if curve[x]["low"] is not None]
            ax.fill_between(
                banded, [curve[x]["low"] for x in banded], [curve[x]["high"] for x in banded], color=colours[g], alpha=0.2
            )
        ax.set(xlabel=xlabel, ylabel=f"attention to constraint ({metric})", title=f"{name}: {view}")
        ax.legend()
        fig.tight_layout()
        path = folder / f"attention_{name}_{view}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(str(path))
    if "per_layer" in summary:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        layers = [row["layer"] for row in summary["per_layer"]]
        for offset, g in ((-0.2, "failed"), (0.2, "solved")):
            heights = [row[g]["mean"] if row[g]["mean"] is not None else 0.0 for row in summary["per_layer"]]
            ax.bar([x + offset for x in layers], heights, width=0.4, color=colours[g], label=g)
        ax.set(xlabel="layer", ylabel=f"mean attention ({metric})", title=f"{name}: per layer")
        ax.legend()
        fig.tight_layout()
        path = folder / f"attention_{name}_layers.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(str(path))
    return paths


def summarise_attention(
    records: list[dict],
    plot_dir: str | Path | None = None,
    metric: str = "per_step",
    max_steps: int = 256,
    seed: int = 0,
) -> dict:
    """JSON-able summary, overall ("all") and per task: group sizes, per-generation means with intervals,
    the attention gap (failed - solved) with an interval, the one-sided Mann-Whitney test, curves over
    absolute steps (first `max_steps`) and over tenths of each generation, gaps per tenth, and per layer.
    `metric` picks the record key holding the per-step series (per_step, per_token_norm or share_norm).
    Plots (PNG) go to `plot_dir` when given; their paths are listed under "plots"."""
    usable = _validate(records, metric)
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in usable:
        by_task[r["task"]].append(r)
    summary = {
        "metric": metric,
        "seed": seed,
        "n_records": len(records),
        "n_empty_outputs": len(records) - len(usable),
        "groups": {"all": _group_summary(usable, metric, max_steps, seed, "all")},
    }
    for task in sorted(by_task):
        summary["groups"][task] = _group_summary(by_task[task], metric, max_steps, seed, task)
    if plot_dir is not None:
        folder = Path(plot_dir)
        folder.mkdir(parents=True, exist_ok=True)
        summary["plots"] = [
            p for name, group in summary["groups"].items() for p in _plot(name, group, metric, folder)
        ]
    return summary
