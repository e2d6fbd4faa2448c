"""GRPO with TRL's GRPOTrainer, one flat YAML per run; rewards by name from train/rewards.py.

    sustain train grpo --config recipes/demo/grpo.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m sustain train grpo --config recipes/qwen2.5-1.5b/grpo_gsm8k.yaml

With `constraint_prompts: true` the prompts carry self-evident constraints mined from the base
policy's own solved outputs (train/constraint_prompts.py); reward them with constrained_accuracy.
"""
from __future__ import annotations

from pathlib import Path

from sustain.train.callbacks import resume_wandb_run
from sustain.train.config import run_main, run_recipe
from sustain.train.sft import build_trainer, last_checkpoint, train_and_save


def run(script_args, training_args, model_args) -> Path:
    from trl import GRPOTrainer

    from sustain.train.rewards import get_rewards

    rewards = get_rewards(script_args.reward_funcs)  # fail on a bad name before any model loads
    if last_checkpoint(training_args.output_dir):
        resume_wandb_run(training_args.output_dir)
    if script_args.constraint_prompts:
        from sustain.train.constraint_prompts import constraint_dataset

        dataset = constraint_dataset(script_args, model_args.model_name_or_path, training_args.output_dir)
    else:
        from sustain.train.data import grpo_dataset

        dataset = grpo_dataset(script_args)
    trainer = build_trainer(GRPOTrainer, script_args, training_args, model_args, reward_funcs=rewards,
                            train_dataset=dataset)
    return train_and_save(trainer, training_args)


def main(argv: list[str] | None = None) -> None:
    run_recipe("grpo", run, argv)


if __name__ == "__main__":
    run_main(main)
