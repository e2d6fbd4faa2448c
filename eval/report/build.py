"""`sustain report`: run folders in, plots + report.json + report.md (+ optional W&B runs) out."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from sustain.eval.errors import UserError, os_error
from sustain.eval.records import write_json_atomic, write_text_atomic
from sustain.eval.report import curves, markdown, plots
from sustain.eval.report.collect import base_checkpoint, collect
from sustain.eval.report.comparable import check_comparable
from sustain.eval.report.stats import paired_tests
from sustain.eval.report.wandb_log import MODES, log_report


def assemble(inputs: list[Path], allow_mixed_settings: bool = False) -> tuple[dict, dict[str, list[int]]]:
    """Everything report.json holds except the plot names; plus pending steps per paradigm.
    Refuses evals run with different settings unless allow_mixed_settings (see comparable.py)."""
    paradigms = collect([Path(p) for p in inputs])
    mixed = check_comparable(paradigms, allow_mixed_settings)
    task_names = curves.tasks(paradigms)
    cell_names = curves.cells(paradigms)
    series = curves.build_series(paradigms)
    base = base_checkpoint(paradigms)
    pending = [{"paradigm": p.name, "step": c.step, "folder": str(c.folder), "reason": c.pending}
               for p in paradigms for c in p.checkpoints if not c.done]
    report = {
        "inputs": [str(p) for p in inputs],
        "settings_differences": mixed,  # empty when every overlaid eval was run alike
        "soft_llms": soft_llms(paradigms),
        "paradigms": {p.name: {"source": str(p.source), "info": p.info,
                               "checkpoints": [{"step": c.step, "folder": str(c.folder),
                                                "status": "done" if c.done else "pending"} for c in p.checkpoints]}
                      for p in paradigms},
        "tasks": task_names,
        "cells": [f"{t}/{f}" for t, f in cell_names],
        "sandbox": {p.name: sorted({str(c.summary.get("sandbox")) for c in p.checkpoints if c.done and c.summary.get("sandbox")})
                    for p in paradigms},
        "series": series,
        "base": None if base is None else curves.checkpoint_numbers(base, cell_names),
        "final": {p.name: curves.final_numbers(p, cell_names) for p in paradigms},
        "paired_tests": paired_tests(paradigms),
        "pending": pending,
        "undefined": curves.undefined_points(series),
    }
    steps = {p.name: [c.step for c in p.checkpoints if not c.done] for p in paradigms}
    return report, steps


def soft_llms(paradigms) -> list[dict]:
    """Which LLMs wrote and judged the soft constraints, across every finished checkpoint (empty: no soft family)."""
    seen = {(tuple(soft.get("extractor") or []), tuple(soft.get("judge") or []))
            for p in paradigms for c in p.done if (soft := c.summary.get("soft_constraints"))}
    return [{"extractor": list(e), "judge": list(j)} for e, j in sorted(seen)]


def build_report(inputs: list[Path], out: Path, wandb_mode: str | None = None, project: str = "sustain-suite",
                 group: str | None = None, notes: str | None = None, allow_mixed_settings: bool = False) -> Path:
    """Build the report from run folders alone; returns the path of report.md.

    inputs: eval run folders, training output_dirs, or comparison roots (see collect.py).
    wandb_mode: None (no W&B), "offline" (runs kept on disk for `wandb sync`) or "online".
    """
    if wandb_mode is not None and wandb_mode not in MODES:
        raise UserError(f"unknown W&B mode {wandb_mode!r}", f"use one of: {', '.join(MODES)} (or leave it out)")
    out = Path(out)
    report, pending_steps = assemble(inputs, allow_mixed_settings)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error("create the report folder", out, exc, flag="--out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise os_error("write to", out, PermissionError(13, "Permission denied"), flag="--out")
    report["plots"] = plots.all_plots(report["series"], report["cells"], pending_steps, out)
    md = out / "report.md"
    write_text_atomic(md, markdown.render(report, notes))
    write_json_atomic(out / "report.json", report)  # last: a report.json means the whole report is there
    if wandb_mode:
        run_dirs = log_report(report, out, wandb_mode, project, group)
        if wandb_mode == "offline":
            print(f"W&B: {len(run_dirs)} offline runs; upload with: wandb sync {' '.join(map(str, run_dirs))}",
                  file=sys.stderr)
    return md
