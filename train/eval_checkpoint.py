"""Evaluate saved models with a recipe's eval settings (eval_* keys): the Python side of slurm/eval.slurm.

    sustain eval-checkpoint CHECKPOINT OUT RECIPE
        one model folder: a checkpoint, or the base model (the comparison driver writes that one to
        <root>/base/eval/checkpoint-0, step 0 of every paradigm)
    sustain eval-checkpoint --run OUTPUT_DIR --recipe RECIPE [--index I]
        a training run's checkpoints into OUTPUT_DIR/eval/checkpoint-N: the I-th checkpoint-* in step
        order (a Slurm job array passes SLURM_ARRAY_TASK_ID), or all of them without --index

Idempotent: a folder that already holds summary.json is left untouched ("already done"), and an
index past the last checkpoint is not an error (an array is sized before training ends).
The settings come from SustainEvalCallback.eval_config, so an eval job scores a checkpoint exactly
as the in-training (inline) eval would.
"""
from __future__ import annotations

from pathlib import Path

from sustain.eval.checkpoints import checkpoint_dirs
from sustain.eval.errors import UserError, argument_parser

from sustain.train.callbacks import SUMMARY, SustainEvalCallback, eval_root
from sustain.train.config import run_main

EVAL_ONLY_FIX = "pass the recipe the run was trained with (its eval_* keys set the eval)"


def run_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders of a training output_dir, in step order."""
    root = Path(output_dir)
    if not root.is_dir():
        raise UserError(f"training output_dir {root} does not exist", "pass the output_dir of a started run")
    return checkpoint_dirs(root)


def eval_callback(recipe: str) -> SustainEvalCallback:
    from sustain.train.recipe_value import parse_any

    if not Path(recipe).is_file():
        raise UserError(f"recipe not found: {recipe}", EVAL_ONLY_FIX)
    script_args = parse_any(recipe, need_kind=False)[1][0]
    return SustainEvalCallback(script_args)


def already_done(out: str | Path) -> bool:
    summary = Path(out) / SUMMARY
    if summary.exists():
        print(f"already done: {summary}")
    return summary.exists()


def evaluate(model: str | Path, out: str | Path, callback: SustainEvalCallback) -> None:
    from sustain.eval.pipeline import run_eval

    run_eval(callback.eval_config(Path(model), Path(out)))
    print(f"evaluated {model} -> {Path(out) / SUMMARY}")


def evaluate_run(output_dir: str | Path, recipe: str, index: int | None = None) -> int:
    """Evaluate the run's checkpoints (one, with index); returns how many were newly evaluated."""
    checkpoints = run_checkpoints(output_dir)
    if index is not None:
        if index < 0:
            raise UserError(f"--index must be 0 or more, got {index}", "pass SLURM_ARRAY_TASK_ID")
        if index >= len(checkpoints):
            print(f"nothing to do: index {index}, and {output_dir} has {len(checkpoints)} checkpoint(s)")
            return 0
        checkpoints = [checkpoints[index]]
    todo = [c for c in checkpoints if not already_done(eval_root(output_dir) / c.name)]
    if todo:
        callback = eval_callback(recipe)  # parsed only when there is work: an idle array task stays fast
        for checkpoint in todo:
            evaluate(checkpoint, eval_root(output_dir) / checkpoint.name, callback)
    return len(todo)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(prog="sustain eval-checkpoint", description=__doc__.splitlines()[0])
    parser.add_argument("positional", nargs="*", metavar="CHECKPOINT OUT RECIPE")
    parser.add_argument("--run", metavar="OUTPUT_DIR", help="evaluate this training run's checkpoints")
    parser.add_argument("--recipe", help="with --run: the run's recipe")
    parser.add_argument("--index", type=int, help="with --run: only the I-th checkpoint (step order)")
    args = parser.parse_args(argv)
    if args.run:
        if args.positional or not args.recipe:
            raise UserError("--run takes --recipe and no positional arguments",
                            "sustain eval-checkpoint --run OUTPUT_DIR --recipe RECIPE [--index I]")
        evaluate_run(args.run, args.recipe, args.index)
        return
    if len(args.positional) != 3 or args.recipe or args.index is not None:
        raise UserError("expected CHECKPOINT OUT RECIPE", "sustain eval-checkpoint CHECKPOINT OUT RECIPE, "
                        "or --run OUTPUT_DIR --recipe RECIPE [--index I]")
    model, out, recipe = args.positional
    if not already_done(out):
        evaluate(model, out, eval_callback(recipe))


if __name__ == "__main__":
    run_main(main)
