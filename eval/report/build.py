"""`sustain report`: run folders in, plots + report.json + report.md (+ optional W&B runs) out."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from sustain.eval.errors import UserError, os_error
from sustain.eval.records import write_json_atomic, write_text_atomic
from sustain.eval.report import curves, markdown, plots
from sustain.eval.report.collect import base_checkpoint, collect
from sustain.eval.report.stats import paired_tests
from sustain.eval.report.wandb_log import MODES, log_report


def assemble(inputs: list[Path]) -> tuple[dict, dict[str, list[int]]]:
    """Everything report.json holds except the plot names; plus pending steps per paradigm."""
    paradigms = collect([Path(p) for p in inputs])
    task_names = curves.tasks(paradigms)
    series = curves.build_series(paradigms)
    base = base_checkpoint(paradigms)
    pending = [{"paradigm": p.name, "step": c.step, "folder": str(c.folder), "reason": c.pending}
               for p in paradigms for c in p.checkpoints if not c.done]
    report = {
        "inputs": [str(p) for p in inputs],
        "paradigms": {p.name: {"source": str(p.source), "info": p.info,
                               "checkpoints": [{"step": c.step, "folder": str(c.folder),
                                                "status": "done" if c.done else "pending"} for c in p.checkpoints]}
                      for p in paradigms},
        "tasks": task_names,
        "series": series,
        "base": None if base is None else curves.checkpoint_numbers(base, task_names),
        "final": {p.name: curves.final_numbers(p, task_names) for p in paradigms},
        "paired_tests": paired_tests(paradigms),
        "pending": pending,
        "undefined": curves.undefined_points(series),
    }
    steps = {p.name: [c.step for c in p.checkpoints if not c.done] for p in paradigms}
    return report, steps


def build_report(inputs: list[Path], out: Path, wandb_mode: str | None = None, project: str = "sustain-suite",
                 group: str | None = None, notes: str | None = None) -> Path:
    """Build the report from run folders alone; returns the path of report.md.

    inputs: eval run folders, training output_dirs, or comparison roots (see collect.py).
    wandb_mode: None (no W&B), "offline" (runs kept on disk for `wandb sync`) or "online".
    """
    if wandb_mode is not None and wandb_mode not in MODES:
        raise UserError(f"unknown W&B mode {wandb_mode!r}", f"use one of: {', '.join(MODES)} (or leave it out)")
    out = Path(out)
    report, pending_steps = assemble(inputs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error("create the report folder", out, exc, flag="--out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise os_error("write to", out, PermissionError(13, "Permission denied"), flag="--out")
    report["plots"] = plots.all_plots(report["series"], report["tasks"], pending_steps, out)
    md = out / "report.md"
    write_text_atomic(md, markdown.render(report, notes))
    write_json_atomic(out / "report.json", report)  # last: a report.json means the whole report is there
    if wandb_mode:
        run_dirs = log_report(report, out, wandb_mode, project, group)
        if wandb_mode == "offline":
            print(f"W&B: {len(run_dirs)} offline runs; upload with: wandb sync {' '.join(map(str, run_dirs))}",
                  file=sys.stderr)
    return md
