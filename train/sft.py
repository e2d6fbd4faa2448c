"""Supervised fine-tuning with TRL's SFTTrainer, one flat YAML per run.

    sustain train sft --config recipes/demo/sft.yaml [--max_steps 20 ...]
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m sustain train sft --config recipes/qwen2.5-1.5b/sft_longcot.yaml

Restarting the same command resumes from the last checkpoint-* in output_dir; with an eval_mode
every saved checkpoint is evaluated (train/callbacks.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

from sustain.eval.checkpoints import checkpoint_dirs
from sustain.eval.errors import UserError

from sustain.train.callbacks import SustainEvalCallback, checkpoint_problem, resume_wandb_run
from sustain.train.config import run_main, run_recipe


def last_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint-N in output_dir; incomplete newer ones are skipped with a warning.

    (transformers' get_last_checkpoint takes the highest N even when its save was interrupted.)
    """
    for folder in reversed(checkpoint_dirs(output_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        print(f"warning: skipping {folder}: {problem} (its save was interrupted); resuming from an earlier checkpoint",
              file=sys.stderr)
    return None


def model_init_kwargs(training_args, model_args) -> dict:
    kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype,
              "attn_implementation": model_args.attn_implementation}
    return {**{k: v for k, v in kwargs.items() if v is not None}, **(training_args.model_init_kwargs or {})}


def callbacks_for(script_args) -> list:
    return [SustainEvalCallback(script_args)] if script_args.eval_mode != "none" else []


def build_trainer(trainer_cls, script_args, training_args, model_args, **trainer_kwargs):
    """A TRL trainer on the recipe's model; model-loading failures become one-line errors."""
    from safetensors import SafetensorError
    from trl import get_peft_config

    training_args.model_init_kwargs = model_init_kwargs(training_args, model_args)
    try:
        return trainer_cls(model=model_args.model_name_or_path, args=training_args,
                           peft_config=get_peft_config(model_args), callbacks=callbacks_for(script_args),
                           **trainer_kwargs)
    except (OSError, SafetensorError) as exc:  # missing local folder, unreachable hub, truncated weights
        raise UserError(f"cannot load model {model_args.model_name_or_path!r}: {str(exc).splitlines()[0]}",
                        "set model_name_or_path to a local model folder or a reachable hub name") from None


def train_and_save(trainer, training_args) -> Path:
    """Train (resuming from the last checkpoint if there is one), save the final model, close trackers."""
    resume = training_args.resume_from_checkpoint or last_checkpoint(training_args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    trainer.end()
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        # the Trainer leaves its W&B run to an exit hook; finish it here so the log is complete
        # when the process ends (a Slurm job may be cut short right after)
        sys.modules["wandb"].run.finish()
    return Path(training_args.output_dir)


def run(script_args, training_args, model_args) -> Path:
    from trl import SFTTrainer

    from sustain.train.data import sft_dataset

    if last_checkpoint(training_args.output_dir):
        resume_wandb_run(training_args.output_dir)
    dataset = sft_dataset(script_args)
    trainer = build_trainer(SFTTrainer, script_args, training_args, model_args, train_dataset=dataset)
    return train_and_save(trainer, training_args)


def main(argv: list[str] | None = None) -> None:
    run_recipe("sft", run, argv)


if __name__ == "__main__":
    run_main(main)
