"""The one W&B scheme for SustainScore numbers, and the report's W&B runs.

The scheme, shared by training runs (train/callbacks.py logs each checkpoint's summary into the
training run) and `sustain report` runs (one run per paradigm): one row per checkpoint, with
  sustain/checkpoint_step           the x axis of every sustain/* key (define_metric), so a late
                                    eval (sbatch) still plots at its checkpoint
  sustain/<metric>                  every defined score of the report's series (curves.py's
                                    checkpoint_metrics names: accuracy, accuracy/<t>, score/<t>/<family>
                                    (the SustainScore, k=1), control/<t>/<family>, coverage/..., macro/<family>,
                                    scale/<t>/<family>/k<k>, follow_rate/..., failures/<class>, ...)
  sustain/<metric>_lo, _hi, _n      its 95% interval and n (failure shares: _count too)
An undefined score is left out of the row (a gap in the curve), never logged as 0. Training rows
also carry train/global_step (the Trainer's W&B integration plots every key against it).

`sustain report --wandb` logs one run per paradigm in a group in that scheme, plus one run with the
plots and tables. Offline runs stay on disk for `wandb sync`; online, a W&B Report is also built
when wandb-workspaces is installed. No key is ever written anywhere: wandb reads WANDB_API_KEY /
its netrc itself.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from sustain.eval.errors import UserError

MODES = ("offline", "online")
PREFIX = "sustain/"
STEP = PREFIX + "checkpoint_step"


def key(metric: str) -> str:
    """The W&B key of a report metric: sustain/<metric>, the SustainScore itself named score."""
    if metric == "sustain" or metric.startswith("sustain/"):
        metric = "score" + metric[len("sustain"):]
    return PREFIX + metric


def define_axis(run) -> None:
    """Every sustain/* key plots against sustain/checkpoint_step."""
    run.define_metric(STEP)
    run.define_metric(PREFIX + "*", step_metric=STEP)


def checkpoint_row(points: dict[str, dict], step: int) -> dict:
    """One checkpoint's points (metric -> {value, lo, hi, n}) as one W&B row of the scheme."""
    row = {STEP: step}
    for metric, p in points.items():
        if p.get("value") is None:
            continue  # undefined: nothing logged, W&B shows a gap
        row[key(metric)] = p["value"]
        for part in ("lo", "hi", "n", "count"):
            if p.get(part) is not None:
                row[f"{key(metric)}_{part}"] = p[part]
    return row


def summary_points(summary: dict, step: int) -> dict[str, dict]:
    """One checkpoint's summary.json as the report's points (the same names as `sustain report`)."""
    from sustain.eval.report.collect import Checkpoint, Paradigm
    from sustain.eval.report.curves import build_series

    checkpoint = Checkpoint(step, Path("."), summary=summary, attention=summary.get("attention"))
    series = build_series([Paradigm("run", Path("."), checkpoints=[checkpoint])])["run"]
    return {metric: points[0] for metric, points in series.items()}


def _rows(metrics: dict[str, list[dict]]) -> list[dict]:
    """One log row per checkpoint (step order)."""
    by_step: dict[int, dict] = {}
    for metric, points in metrics.items():
        for p in points:
            by_step.setdefault(p["step"], {})[metric] = p
    return [checkpoint_row(by_step[s], s) for s in sorted(by_step)]


def final_table_rows(report: dict) -> tuple[list[str], list[list]]:
    """One row per paradigm and (task, family) cell at its final checkpoint (k=1)."""
    columns = ["paradigm", "final_step", "task", "family", "accuracy", "sustain", "sustain_lo", "sustain_hi",
               "sustain_n", "control", "control_lo", "control_hi", "vs_control_p", "coverage", "follow_rate"]
    data = []
    for name, f in report["final"].items():
        if f is None:
            continue
        for cell in report["cells"]:
            c = f["cells"][cell]
            data.append([name, f["step"], c["task"], c["family"], c["accuracy"]["value"], c["score"]["value"],
                         c["score"]["lo"], c["score"]["hi"], c["score"]["n"], c["control"]["value"],
                         c["control"]["lo"], c["control"]["hi"], c["vs_control_p"], c["coverage"]["value"],
                         c["follow_rate"]["value"]])
    return columns, data


def _init(wandb, mode: str, project: str, group: str, name: str, job_type: str, config: dict, wandb_dir: str):
    return wandb.init(project=project, group=group, name=name, job_type=job_type, mode=mode, dir=wandb_dir,
                      config=config, reinit="create_new")


def log_report(report: dict, out: Path, mode: str, project: str, group: str | None = None) -> list[Path]:
    """Log every paradigm's curves and the report's plots/tables; returns the local run folders."""
    if mode not in MODES:
        raise UserError(f"unknown W&B mode {mode!r}", f"use one of: {', '.join(MODES)} (or leave it out)")
    import wandb

    group = group or f"sustain-report-{out.resolve().name}"
    wandb_dir = os.environ.get("WANDB_DIR") or str(out)  # default: beside the report, ready for `wandb sync`
    Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    run_dirs = []
    entity = None
    for name, metrics in report["series"].items():
        info = report["paradigms"][name]
        run = _init(wandb, mode, project, group, name, "sustain-curves",
                    {"paradigm": name, "source": info["source"], **info["info"]}, wandb_dir)
        define_axis(run)
        for row in _rows(metrics):
            run.log(row)
        final = report["final"].get(name)
        if final is not None:
            run.summary.update({"final_step": final["step"], "final_accuracy": final["accuracy"]["value"],
                                **{f"final_score/{cell}": c["score"]["value"] for cell, c in final["cells"].items()}})
        entity = run.entity
        run_dirs.append(Path(run.dir).parent)
        run.finish()

    run = _init(wandb, mode, project, group, "report", "sustain-report", {"inputs": report["inputs"]}, wandb_dir)
    columns, data = final_table_rows(report)
    logged = {f"plots/{key}": wandb.Image(str(out / name), caption=key) for key, name in report["plots"].items()}
    logged["final_numbers"] = wandb.Table(columns=columns, data=data)
    if report["paired_tests"]:
        keys = list(report["paired_tests"][0])
        rows = [[t.get(k) for k in keys] for t in report["paired_tests"]]
        logged["paired_tests"] = wandb.Table(columns=keys, data=rows)
    run.log(logged)
    run_dirs.append(Path(run.dir).parent)
    run.finish()
    if mode == "online":
        url = build_wandb_report(report, project, entity, group)
        if url:
            print(f"W&B report: {url}", file=sys.stderr)
    return run_dirs


def report_blocks(report: dict, project: str, entity: str | None, group: str, wr) -> list:
    """The W&B Report's blocks (wr = wandb_workspaces.reports.v2): findings, curves of the group, plots."""
    from sustain.eval.report.markdown import findings

    runset = wr.Runset(project=project, entity=entity, name=group, filters=f"Metric('Group') == '{group}'")
    panels = [wr.LinePlot(title=f"SustainScore k=1, {cell}, with its control", x=STEP,
                          y=[key(f"score/{cell}"), key(f"control/{cell}")]) for cell in report["cells"]]
    panels += [wr.LinePlot(title=y, x=STEP, y=[key(y)]) for y in ["accuracy", *[f"accuracy/{t}" for t in report["tasks"]]]]
    if any("attention_gap" in m for m in report["series"].values()):
        panels.append(wr.LinePlot(title="attention_gap", x=STEP, y=[key("attention_gap")]))
    panels.append(wr.MediaBrowser(title="report plots", media_keys=[f"plots/{k}" for k in report["plots"]]))
    return [wr.MarkdownBlock(text="\n".join(f"- {s}" for s in findings(report))),
            wr.PanelGrid(runsets=[runset], panels=panels)]


def build_wandb_report(report: dict, project: str, entity: str | None, group: str) -> str | None:
    """A saved W&B Report for the group, or None (with a note) when the report API is not installed."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        print("W&B Report not built: pip install 'wandb[workspaces]' (the runs are logged)", file=sys.stderr)
        return None
    rep = wr.Report(project=project, entity=entity, title=f"SustainScore robustness: {group}",
                    description="Built by `sustain report` from run folders.",
                    blocks=report_blocks(report, project, entity, group, wr))
    rep.save()
    return rep.url
