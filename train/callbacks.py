"""Evaluate every saved checkpoint with the SustainScore pipeline and put the results in W&B.

eval_mode (recipe):
  inline  the checkpoint is evaluated inside the training processes: with N ranks each rank runs the
          pipeline on its 1/N of the items (sustain.eval.shards) and rank 0 merges the records and
          writes the summary; results land in <output_dir>/eval/checkpoint-N/.
  sbatch  rank 0 submits `sbatch --parsable slurm/eval.slurm <checkpoint> <eval dir> <recipe>` and
          goes on training; the job id is kept in <eval dir>/job.json.
  none    nothing.
A checkpoint whose eval dir already holds summary.json (or job.json, for sbatch) is not evaluated
again, so a resumed run only evaluates new checkpoints.

Where the numbers go in W&B, and why: into the TRAINING run itself, never into a sibling run.
The robustness curve belongs next to the loss and reward curves it explains, in the run people
already open, and a run group of one training run plus N eval runs makes every comparison a
cross-run query. Two things make this safe:
  * Steps. W&B's own step only moves forward, and an sbatch eval finishes while training has
    moved on. So sustain metrics carry their checkpoint step as a metric, `sustain/checkpoint_step`,
    declared as their x-axis, and are logged without an explicit step; a result that arrives late
    still plots at its checkpoint. The keys and the axis are the one scheme `sustain report` uses
    too (sustain.eval.report.wandb_log).
  * One writer at a time. W&B has no safe concurrent writers to one run (offline runs cannot even
    be merged), so eval jobs never touch W&B. While training runs, the trainer's rank 0 is the
    only writer: it logs inline results at once and picks up finished sbatch summaries (a stat per
    pending checkpoint) on every log and save. After training, `sustain sync
    OUTPUT_DIR` resumes the same run by id (kept in <output_dir>/eval/wandb_run.json) and logs what
    finished later; a restarted training run resumes it by id too (see resume_wandb_run).
Each eval dir records which W&B run ids already hold its numbers (wandb_logged.json), so nothing is
logged twice to one run and a brand-new run (resume by id turned off) still gets the full curve.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from sustain.eval.checkpoints import checkpoint_dirs, checkpoint_step
from sustain.eval.errors import UserError, argument_parser
from sustain.eval.report import wandb_log as scheme
from sustain.eval.records import write_json_atomic
from sustain.eval.run_files import read_json_file

from sustain.train import eval_block
from sustain.train.config import EvalArguments

SUMMARY = "summary.json"
JOB = "job.json"
LOGGED = "wandb_logged.json"
RUN_FILE = "wandb_run.json"
MAX_TABLE_OUTPUT = 2000  # characters of each failure example kept in the W&B table


def eval_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "eval"


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint-N folder is unusable (a save cut short by a kill), or None if it is complete.

    The Trainer writes trainer_state.json last, so a folder without a readable one was not finished.
    """
    from safetensors import SafetensorError, safe_open

    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, ValueError):
        return "trainer_state.json is truncated or corrupt"
    for weights in folder.glob("*.safetensors"):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except (OSError, SafetensorError):
            return f"{weights.name} is truncated or corrupt"
    return None


class SustainEvalCallback(TrainerCallback):
    """on_save: evaluate (inline) or submit (sbatch) the new checkpoint; log finished evals to W&B."""

    def __init__(self, eval_args: EvalArguments):
        self.cfg = eval_args
        self._warned_no_sbatch = False

    # -- Trainer events

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.cfg.eval_mode != "none":
            run = _wandb_run()
            if run is not None:
                _define_metrics(run)
                write_json_atomic(eval_root(args.output_dir) / RUN_FILE,
                                  {"id": run.id, "project": run.project, "entity": run.entity})
        if self.cfg.eval_mode == "inline":
            self.finish_interrupted(args)

    def finish_interrupted(self, args) -> None:
        """A kill during a checkpoint's inline eval: no on_save comes again for it, so resume it now
        (every rank, since each holds a share of the items)."""
        for checkpoint in checkpoint_dirs(args.output_dir):
            out = eval_root(args.output_dir) / checkpoint.name
            if checkpoint_problem(checkpoint) is None:
                self.evaluate(checkpoint, out, args)

    def on_save(self, args, state, control, **kwargs):
        if self.cfg.eval_mode == "none":
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        out = eval_root(args.output_dir) / checkpoint.name
        if self.cfg.eval_mode == "inline":
            self.evaluate(checkpoint, out, args)
        elif state.is_world_process_zero:
            self.submit(checkpoint, out)
        if state.is_world_process_zero:
            log_finished(args.output_dir)

    def on_log(self, args, state, control, **kwargs):
        if self.cfg.eval_mode == "sbatch" and state.is_world_process_zero:
            log_finished(args.output_dir)

    def on_train_end(self, args, state, control, **kwargs):
        if self.cfg.eval_mode == "none" or not state.is_world_process_zero:
            return
        log_finished(args.output_dir)
        pending = [d.name for d in checkpoint_dirs(eval_root(args.output_dir)) if not (d / SUMMARY).exists()]
        if pending and self.cfg.eval_mode == "sbatch":
            print(f"{len(pending)} checkpoint eval(s) still running ({', '.join(sorted(pending))}); when they finish, "
                  f"`sustain sync {args.output_dir}` logs them to this W&B run", file=sys.stderr)

    # -- the two modes

    def eval_config(self, checkpoint: Path, out: Path):
        """The recipe's eval block, pointed at this checkpoint and its eval folder."""
        return eval_block.per_checkpoint(self.cfg.eval, checkpoint, out)

    def evaluate(self, checkpoint: Path, out: Path, args=None) -> dict | None:
        """Every rank evaluates its share of the items; rank 0 merges them (records identical to a
        one-rank eval) and writes the summary. One rank: the plain pipeline."""
        if (out / SUMMARY).exists():
            return None  # evaluated before a restart (every rank sees the same shared folder)
        cfg = self.eval_config(checkpoint, out)
        if args is None or args.world_size == 1:
            from sustain.eval.pipeline import run_eval

            return run_eval(cfg)
        from accelerate import PartialState

        from sustain.eval.shards import merge_shards, run_shard

        PartialState().wait_for_everyone()  # only rank 0 saves: the checkpoint is complete once it arrives here
        run_shard(cfg, args.process_index, args.world_size)
        PartialState().wait_for_everyone()
        summary = merge_shards(cfg, args.world_size) if args.process_index == 0 else None
        PartialState().wait_for_everyone()  # no rank starts the next step before the summary exists
        return summary

    def submit(self, checkpoint: Path, out: Path) -> str | None:
        """Submit the checkpoint's eval job; a missing sbatch or a refused job is a warning, not a crash."""
        if (out / SUMMARY).exists() or (out / JOB).exists():
            return None
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            if not self._warned_no_sbatch:
                print("warning: sbatch not found, checkpoint evals are not submitted "
                      "(fix: run on a Slurm login node or set eval_mode: inline)", file=sys.stderr)
                self._warned_no_sbatch = True
            return None
        # the effective settings (recipe + CLI overrides), not the recipe file: overrides must reach the job
        recipe = str(self._write_eval_recipe(out))
        cmd = [sbatch, "--parsable", *self.cfg.eval_sbatch_args, self.cfg.eval_slurm_script,
               str(checkpoint.resolve()), str(out.resolve()), recipe]
        try:  # sbatch only queues the job: it returns at once, so training is not held up
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"warning: sbatch failed for {checkpoint.name}: {exc}", file=sys.stderr)
            return None
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            print(f"warning: sbatch refused the eval of {checkpoint.name}: {reason}", file=sys.stderr)
            return None
        job_id = proc.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"
        write_json_atomic(out / JOB, {"job_id": job_id, "checkpoint": str(checkpoint), "command": cmd,
                                      "submitted_at": time.time()})
        return job_id

    def _write_eval_recipe(self, out: Path) -> Path:
        """Hand the eval job the effective eval block as a recipe holding only that block."""
        import yaml

        path = out / "eval_recipe.yaml"
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({eval_block.KEY: eval_block.settings(self.cfg.eval)}), encoding="utf-8")
        return path


# ---------------------------------------------------------------- W&B


def _wandb_run():
    if "wandb" not in sys.modules:  # only when the trainer's W&B integration (or the user) started it
        return None
    import wandb

    return wandb.run


_DEFINED: set[str] = set()  # run ids whose sustain axis is declared (log_finished runs on every log)


def _define_metrics(run) -> None:
    if run.id in _DEFINED:
        return
    scheme.define_axis(run)
    _DEFINED.add(run.id)


def wandb_metrics(summary: dict, step: int) -> dict:
    """One checkpoint's summary.json as a W&B row of the shared scheme (sustain/<metric> with _lo, _hi, _n):
    the SustainScore only per task and family at k=1 (sustain/score/<task>/<family>)."""
    # train/global_step too: the trainer's W&B integration plots "*" against it, so either axis
    # puts the point at its checkpoint.
    return {**scheme.checkpoint_row(scheme.summary_points(summary, step), step), "train/global_step": step}


def failure_table(summary: dict):
    import wandb

    columns = ["task", "item_id", "class", "constraint", "output"]
    rows = [[str(ex.get(c, ""))[:MAX_TABLE_OUTPUT] for c in columns] for ex in summary.get("failure_examples") or []]
    return wandb.Table(columns=columns, data=rows)


def log_summary(run, summary: dict, step: int) -> None:
    metrics = wandb_metrics(summary, step)
    if summary.get("failure_examples"):
        metrics["sustain/failure_examples"] = failure_table(summary)
    run.log(metrics)


def log_finished(output_dir: str | Path, run=None) -> list[int]:
    """Log every finished checkpoint eval that `run` (default: the active run) does not hold yet; their steps."""
    run = run or _wandb_run()
    if run is None:
        return []
    _define_metrics(run)
    logged_steps = []
    for out in checkpoint_dirs(eval_root(output_dir)):
        summary_path, marker = out / SUMMARY, out / LOGGED
        if not summary_path.exists():
            continue
        logged = read_json_file(marker) if marker.exists() else {}
        runs = logged.get("runs", []) if isinstance(logged, dict) else []
        if run.id in runs:
            continue
        summary = read_json_file(summary_path, f"rerun `sustain summary {out}`")
        if not isinstance(summary, dict) or not isinstance(summary.get("sustain"), dict):
            raise UserError(f"{summary_path} is not a summary of this suite", f"rerun `sustain summary {out}`")
        log_summary(run, summary, checkpoint_step(out))
        write_json_atomic(marker, {"runs": [*runs, run.id]})
        logged_steps.append(checkpoint_step(out))
    return logged_steps


def resume_wandb_run(output_dir: str | Path) -> None:
    """On a restart, continue the W&B run this output_dir logged to before (unless the user chose one)."""
    run_file = eval_root(output_dir) / RUN_FILE
    if run_file.exists() and "WANDB_RUN_ID" not in os.environ:
        os.environ["WANDB_RUN_ID"] = json.loads(run_file.read_text())["id"]
        os.environ.setdefault("WANDB_RESUME", "allow")


def sync(output_dir: str | Path) -> list[int]:
    """After training: resume the training run by id and log the evals that finished since."""
    run_file = eval_root(output_dir) / RUN_FILE
    if not run_file.exists():
        raise UserError(f"no W&B run recorded in {run_file}", "train with report_to: wandb and an eval_mode first")
    info = read_json_file(run_file, "delete it and log the evals into a new run")
    if not isinstance(info, dict) or not isinstance(info.get("id"), str):
        raise UserError(f"{run_file} does not name a W&B run id", "restore it, or delete it and log the evals into a new run")
    import wandb

    run = wandb.init(id=info["id"], project=info.get("project"), entity=info.get("entity"), resume="allow")
    try:
        return log_finished(output_dir, run)
    finally:
        run.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(prog="sustain sync", description="log finished checkpoint evals to W&B")
    parser.add_argument("output_dir")
    args = parser.parse_args(argv)
    steps = sync(args.output_dir)
    print(f"logged {len(steps)} checkpoint eval(s): steps {steps}")


if __name__ == "__main__":
    from sustain.train.config import run_main

    run_main(main)
