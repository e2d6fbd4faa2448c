"""Evaluate saved models with a recipe's eval block: the Python side of slurm/eval.slurm.

    sustain eval-checkpoint CHECKPOINT OUT RECIPE
        one model folder: a checkpoint, or the base model (the comparison driver writes that one to
        <root>/base/eval/checkpoint-0, step 0 of every paradigm)
    sustain eval-checkpoint --run OUTPUT_DIR --recipe RECIPE [--index I]
        a training run's checkpoints into OUTPUT_DIR/eval/checkpoint-N: the I-th checkpoint-* in step
        order (a Slurm job array passes SLURM_ARRAY_TASK_ID), or all of them without --index

Idempotent: a folder that already holds summary.json is left untouched ("already done"), and an
index past the last checkpoint is not an error (an array is sized before training ends).
The settings are the recipe's eval block (train/eval_block.py, read without a full SFT/GRPO recipe
parse), pointed at each checkpoint as the in-training (inline) eval does.
"""
from __future__ import annotations

from pathlib import Path

from sustain.eval.checkpoints import checkpoint_dirs
from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError, argument_parser

from sustain.train import eval_block
from sustain.train.callbacks import SUMMARY, eval_root
from sustain.train.config import run_main

EVAL_ONLY_FIX = "pass the recipe the run was trained with (its eval: block sets the eval)"


def run_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders of a training output_dir, in step order."""
    root = Path(output_dir)
    if not root.is_dir():
        raise UserError(f"training output_dir {root} does not exist", "pass the output_dir of a started run")
    return checkpoint_dirs(root)


def eval_settings(recipe: str) -> EvalConfig:
    if not Path(recipe).is_file():
        raise UserError(f"recipe not found: {recipe}", EVAL_ONLY_FIX)
    return eval_block.recipe_eval_config(recipe)


def already_done(out: str | Path) -> bool:
    summary = Path(out) / SUMMARY
    if summary.exists():
        print(f"already done: {summary}")
    return summary.exists()


def evaluate(model: str | Path, out: str | Path, config: EvalConfig) -> None:
    from sustain.eval.pipeline import run_eval

    run_eval(eval_block.per_checkpoint(config, model, out))
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
        config = eval_settings(recipe)  # read only when there is work: an idle array task stays fast
        for checkpoint in todo:
            evaluate(checkpoint, eval_root(output_dir) / checkpoint.name, config)
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
        evaluate(model, out, eval_settings(recipe))


if __name__ == "__main__":
    run_main(main)
