"""PNG plots of the series (matplotlib's object API on the Agg canvas: no pyplot, no display needed).

Undefined points are gaps in the lines, marked x on the axis floor; pending checkpoints are marked
with a hollow triangle at the top, so neither can be read as a measured 0.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from matplotlib.figure import Figure

from sustain.eval.failures import CLASSES

DPI = 110


def colours(names: list[str]) -> dict[str, str]:
    """A fixed colour per paradigm, the same in every plot (the base model is always grey)."""
    palette = [f"C{i}" for i in range(10)]
    others = [n for n in names if n != "base"]
    out = {n: palette[i % len(palette)] for i, n in enumerate(others)}
    out["base"] = "0.4"
    return out


def file_name(stem: str) -> str:
    return re.sub(r"[^\w.-]+", "_", stem) + ".png"


def _nan(v):
    return math.nan if v is None else v


def _curve(ax, points: list[dict], colour: str, label: str, band: bool = True) -> None:
    steps = [p["step"] for p in points]
    values = [_nan(p["value"]) for p in points]
    ax.plot(steps, values, marker="o", markersize=4, color=colour, label=label)
    if band:
        ax.fill_between(steps, [_nan(p.get("lo")) for p in points], [_nan(p.get("hi")) for p in points],
                        color=colour, alpha=0.18, linewidth=0)
    gaps = [p["step"] for p in points if p["value"] is None]
    if gaps:  # x on the floor: undefined, see the report's table for the reason
        ax.plot(gaps, [0.02] * len(gaps), linestyle="none", marker="x", color=colour, markersize=7,
                transform=ax.get_xaxis_transform(), clip_on=False)


def _pending(ax, steps: list[int], colour: str) -> None:
    if steps:
        ax.plot(steps, [0.97] * len(steps), linestyle="none", marker="v", markerfacecolor="none",
                markeredgecolor=colour, markersize=7, transform=ax.get_xaxis_transform())


def _legend_notes(ax, any_gap: bool, any_pending: bool) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if any_gap:
        handles.append(ax.plot([], [], linestyle="none", marker="x", color="k")[0])
        labels.append("undefined (see table)")
    if any_pending:
        handles.append(ax.plot([], [], linestyle="none", marker="v", markerfacecolor="none", markeredgecolor="k")[0])
        labels.append("eval pending")
    ax.legend(handles, labels, fontsize=8, loc="best")


def robustness_plot(series: dict, cell: str, title: str, path: Path, pending: dict[str, list[int]],
                    colour: dict[str, str]) -> Path:
    """One (task, family) cell: SustainScore at k=1 with its control retention dashed (top) and the
    task's accuracy (bottom) against training step, every paradigm, 95% bands."""
    task = cell.split("/")[0]
    sustain_metric, control_metric, accuracy_metric = f"score/{cell}", f"control/{cell}", f"accuracy/{task}"
    fig = Figure(figsize=(7.5, 6.5), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    any_gap = any_pending = False
    for name, metrics in series.items():
        for ax, metric in ((top, sustain_metric), (bottom, accuracy_metric)):
            points = metrics.get(metric, [])
            _curve(ax, points, colour[name], name)
            _pending(ax, pending.get(name, []), colour[name])
            any_gap |= any(p["value"] is None for p in points)
        control = metrics.get(control_metric, [])
        if any(p["value"] is not None for p in control):
            top.plot([p["step"] for p in control], [_nan(p["value"]) for p in control], linestyle="--",
                     color=colour[name], alpha=0.7, label=f"{name}: control (no constraint)")
        any_pending |= bool(pending.get(name))
    top.set_ylabel("SustainScore (k=1)")
    bottom.set_ylabel("baseline accuracy")
    bottom.set_xlabel("training step (0 = base model)")
    for ax in (top, bottom):
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    top.set_title(f"{title}: solved under one constraint / solved at baseline (95% bands)", fontsize=10)
    _legend_notes(top, any_gap, any_pending)
    fig.savefig(path)
    return path


def attention_plot(series: dict, path: Path, colour: dict[str, str]) -> Path:
    """The attention gap (failed minus successful constrained runs' mass on the constraint) by step."""
    fig = Figure(figsize=(7.5, 4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for name, metrics in series.items():
        _curve(ax, metrics.get("attention_gap", []), colour[name], name)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xlabel("training step (0 = base model)")
    ax.set_ylabel("attention gap on the constraint")
    ax.set_title("Attention on constraint tokens: failed minus successful runs (95% bands)", fontsize=10)
    ax.grid(alpha=0.3)
    _legend_notes(ax, any(p["value"] is None for m in series.values() for p in m.get("attention_gap", [])), False)
    fig.savefig(path)
    return path


def failures_plot(series: dict, path: Path) -> Path:
    """Per paradigm: failure classes stacked as shares of constrained runs, one bar per checkpoint."""
    names = list(series)
    fig = Figure(figsize=(2.0 + 3.6 * len(names), 4.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names):
        metrics = series[name]
        steps = [p["step"] for p in metrics.get("failures/reasoning", [])]
        x = list(range(len(steps)))  # steps are uneven: one evenly spaced bar per checkpoint
        bottom = [0.0] * len(steps)
        for i, cls in enumerate(CLASSES):
            share = [_nan(p["value"]) for p in metrics.get(f"failures/{cls}", [])]
            ax.bar(x, [0 if math.isnan(s) else s for s in share], bottom=bottom, color=f"C{i}", label=cls)
            bottom = [b + (0 if math.isnan(s) else s) for b, s in zip(bottom, share)]
        meta = [_nan(p["value"]) for p in metrics.get("failures/meta_commentary", [])]
        ax.plot(x, meta, color="k", linestyle="--", marker="d", markersize=4, label="meta-commentary (rate among failures)")
        stride = math.ceil(len(steps) / 8) or 1  # at most ~8 step labels per panel
        ax.set_xticks(x[::stride], [str(s) for s in steps[::stride]])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("share of constrained runs that failed")
    axes[0].set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    fig.suptitle("Why solved items failed under a constraint (share of constrained runs)", fontsize=11)
    fig.savefig(path)
    return path


def all_plots(series: dict, cells: list[str], pending: dict[str, list[int]], out: Path) -> dict[str, str]:
    """Write every plot into out/ (one robustness plot per task/family cell); returns {plot id: file name}."""
    colour = colours(list(series))
    plots = {}
    for cell in cells:
        task, family = cell.split("/")
        plots[f"cell/{cell}"] = robustness_plot(series, cell, f"{task}, {family} constraints",
                                                out / file_name(f"curves_{task}_{family}"), pending, colour)
    if any("attention_gap" in m for m in series.values()):
        plots["attention_gap"] = attention_plot(series, out / file_name("attention_gap"), colour)
    plots["failures"] = failures_plot(series, out / file_name("failures"))
    return {k: p.name for k, p in plots.items()}
