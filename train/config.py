"""One flat YAML per run -> (script arguments, SFTConfig | GRPOConfig, ModelConfig), TRL style.

Built on trl.TrlParser: the YAML sets the defaults, CLI flags override them. TrlParser itself turns
an unknown YAML key into a ValueError listing `--key value` strings, and an unknown CLI flag into
a traceback from HfArgumentParser; here both are one-line UserErrors naming the key, the closest
valid keys, and where the full list is (`--help`).

On a machine without CUDA the recipe is run on the CPU with bf16 and gradient checkpointing off
(TRL turns both on by default); a one-line warning says which recipe values were changed.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sustain.eval.errors import UserError, run_entry
from sustain.eval.generators import DEFAULT_BACKEND
from sustain.eval.generators.gguf import converted_folder, gguf_file
from sustain.eval.tasks import DEFAULT_TASK, TASKS

EVAL_MODES = ("none", "inline", "sbatch")
# gradient_checkpointing is transformers' deprecated alias of activation_checkpointing: set both.
CPU_OVERRIDES = {
    "use_cpu": True,
    "bf16": False,
    "fp16": False,
    "activation_checkpointing": False,
    "gradient_checkpointing": False,
}


@dataclass
class DataArguments:
    """What to train on. `dataset` is an eval task (a name or module:Class), a hub name or a local JSONL file."""

    dataset: str = field(
        default=DEFAULT_TASK,
        metadata={"help": f"{' | '.join(TASKS)} | module:Class | open-r1/OpenR1-Math-220k | simplescaling/s1K-1.1 | path/to/file.jsonl"},
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "local file or folder for a task or hub-named set (offline machines)"}
    )
    dataset_split: str = "train"
    dataset_limit: int | None = field(default=None, metadata={"help": "keep the first N rows"})
    dataset_size: int = field(default=2000, metadata={"help": "rows to generate for synthetic tasks"})
    dataset_seed: int = 0
    instruction_rate: float = field(
        default=0.0, metadata={"help": "synthetic tasks: fraction of prompts carrying a self-evident instruction"}
    )
    task_options: list[str] = field(
        default_factory=list, metadata={"help": "task constructor options as key=value, e.g. digits=2 ops=+"}
    )
    think_format: bool = field(
        default=False, metadata={"help": "reasoning-model format: <think>trace</think> then the final answer"}
    )
    system_prompt: str | None = None


@dataclass
class EvalArguments:
    """The per-checkpoint SustainScore eval (train/callbacks.py)."""

    eval_mode: str = field(default="none", metadata={"help": "none | inline | sbatch"})
    eval_tasks: list[str] = field(default_factory=lambda: [DEFAULT_TASK])
    eval_limit: int | None = field(default=50, metadata={"help": "items per task (the eval's item budget)"})
    eval_k_max: int = 1
    eval_families: list[str] = field(default_factory=lambda: ["hard"])
    eval_max_new_tokens: int = 4096
    eval_batch_size: int = 16
    eval_attention: bool = False
    eval_seed: int = 0
    eval_backend: str = DEFAULT_BACKEND
    eval_data: list[str] = field(default_factory=list, metadata={"help": "task=path entries for local eval data"})
    eval_slurm_script: str = "slurm/eval.slurm"
    eval_sbatch_args: list[str] = field(default_factory=list, metadata={"help": "extra sbatch flags"})


@dataclass
class SFTScriptArguments(DataArguments, EvalArguments):
    pass


@dataclass
class GRPOScriptArguments(DataArguments, EvalArguments):
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy"], metadata={"help": "names from train.rewards.REWARDS"}
    )
    # The constraint-augmented paradigm (train/constraint_prompts.py).
    constraint_prompts: bool = field(
        default=False, metadata={"help": "append self-evident constraints mined from the base policy's outputs"}
    )
    constraint_pool: int = field(default=64, metadata={"help": "items the base policy answers to mine constraints"})
    constraint_k: int = 1
    constraint_seed: int = 0
    constraint_max_new_tokens: int = 256


def _trainer_config(kind: str):
    from trl import GRPOConfig, SFTConfig

    return {"sft": SFTConfig, "grpo": GRPOConfig}[kind]


def script_arguments(kind: str):
    return {"sft": SFTScriptArguments, "grpo": GRPOScriptArguments}[kind]


def _load_recipe(path: str) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"recipe not found: {path}", "pass --config path/to/recipe.yaml")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}", "fix the syntax of that file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a flat mapping of key: value", "write one key: value per line")
    return data


def _unknown_key_error(key: str, valid: Sequence[str], where: str, kind: str) -> UserError:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return UserError(
        f"unknown key {key!r} in {where}",
        f"{hint}valid keys are the fields of the {kind} script arguments, ModelConfig and "
        f"{_trainer_config(kind).__name__}, listed by `sustain train {kind} --help`",
    )


def _bad_value(message: str, kind: str):
    """argparse's error hook (e.g. "argument --max_steps/--max-steps: invalid int value: 'abc'") as one line."""
    raise UserError(f"invalid recipe value: {message}",
                    f"give that key a value of its type; `sustain train {kind} --help` lists them")


def _valid_keys(dataclass_types) -> list[str]:
    return sorted({f.name for cls in dataclass_types for f in dataclasses.fields(cls)})


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def parse_recipe(kind: str, argv: Sequence[str] | None = None):
    """(script_args, training_args, model_args) for kind "sft" | "grpo" from `--config X.yaml` + flags.

    script_args.recipe holds the absolute recipe path (None without --config), for the eval job.
    """
    from trl import ModelConfig, TrlParser

    types_ = (script_arguments(kind), _trainer_config(kind), ModelConfig)
    # allow_abbrev=False: a misspelt flag is an error, not silently taken as the key it prefixes
    parser = TrlParser(types_, prog=f"sustain train {kind}", allow_abbrev=False)
    parser.error = lambda message: _bad_value(message, kind)  # argparse would print its 170-line usage
    args = list(sys.argv[1:] if argv is None else argv)
    valid = _valid_keys(types_)

    recipe_path, values = None, {}
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise UserError("--config needs a file", "pass --config recipes/demo/sft.yaml")
        recipe_path = str(Path(args[i + 1]).resolve())
        del args[i : i + 2]
        values = _load_recipe(recipe_path)
        for key, value in (values.pop("env", None) or {}).items():
            os.environ[key] = str(value)  # TrlParser's `env:` block
        for key in values:
            if key not in valid:
                raise _unknown_key_error(key, valid, recipe_path, kind)

    if not cuda_available():
        changed = {k: v for k, v in CPU_OVERRIDES.items() if values.get(k, v) != v}
        if changed:
            print(f"warning: no CUDA device: running on CPU with {changed}", file=sys.stderr)
        values.update(CPU_OVERRIDES)

    _check_value_types(values, types_, recipe_path or "the recipe")
    parser.set_defaults_with_config(**values)
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    except ValueError as exc:  # a dataclass __post_init__ refusing a combination of values
        raise UserError(f"invalid recipe settings: {str(exc).splitlines()[0]}", "fix the recipe or the flags") from None
    flags = [a for a in rest if a.startswith("--")]
    if rest:
        key = (flags[0] if flags else rest[0]).lstrip("-").split("=")[0]
        raise _unknown_key_error(key, valid, "the command line", kind)
    script_args, training_args, model_args = parsed
    _check(script_args, model_args)
    _check_training(training_args)
    check_eval_settings(script_args, training_args.output_dir)
    script_args.recipe = recipe_path
    return script_args, training_args, model_args


def _check(script_args, model_args) -> None:
    if script_args.eval_mode not in EVAL_MODES:
        raise UserError(f"unknown eval_mode {script_args.eval_mode!r}", f"use one of: {', '.join(EVAL_MODES)}")
    if not model_args.model_name_or_path:
        raise UserError("no model given", "set model_name_or_path in the recipe or pass --model_name_or_path")
    if script_args.eval_limit is not None and script_args.eval_limit < 0:  # else it fails only at the first checkpoint
        raise UserError(f"eval_limit must be >= 0, got {script_args.eval_limit}", "set eval_limit to 0 or more, or null for all items")
    for entry in [*script_args.eval_data, *script_args.task_options]:
        if "=" not in entry:
            raise UserError(f"expected key=value, got {entry!r}", "write e.g. TASK=/data/test.jsonl")
    # A PEFT adapter stores its base model path as given: make local paths absolute.
    local = Path(model_args.model_name_or_path).expanduser()
    if local.exists():
        model_args.model_name_or_path = str(local.resolve())
    # A .gguf base trains from its dequantised safetensors folder, so checkpoints are ordinary ones.
    gguf = gguf_file(model_args.model_name_or_path)
    if gguf is not None:
        model_args.model_name_or_path = str(converted_folder(gguf))


def _check_value_types(values: dict, dataclass_types, where: str) -> None:
    """YAML values of number fields, which argparse never converts (they arrive as defaults): 2.5 for
    an int, true for a number, or nan/inf are refused here instead of failing mid-training."""
    import math
    import types
    import typing

    hints = {}
    for cls in dataclass_types:
        for f in dataclasses.fields(cls):
            hints.setdefault(f.name, f.type)
    for key, value in values.items():
        hint = hints.get(key)
        if isinstance(hint, str):
            hint = {"int": int, "float": float, "Optional[int]": int, "Optional[float]": float,
                    "int | None": int, "float | None": float}.get(hint.replace("typing.", ""), hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[0] if len(args) == 1 else None
            if value is None:
                continue
        if hint not in (int, float):
            continue
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value) or (hint is int and value != int(value)):
            kind = "a whole number" if hint is int else "a finite number"
            raise UserError(f"{key} in {where} must be {kind}, got {value!r}", f"write {key}: {'2' if hint is int else '0.5'}")
        values[key] = hint(value)


# Training settings that must be positive for a run to start (and finish).
POSITIVE_INTS = ("per_device_train_batch_size", "gradient_accumulation_steps", "dataset_size", "constraint_pool",
                 "constraint_k", "constraint_max_new_tokens", "num_generations")


def _check_training(training_args) -> None:
    import math

    for key in POSITIVE_INTS:
        value = getattr(training_args, key, None)
        if isinstance(value, int) and value < 1:
            raise UserError(f"{key} must be at least 1, got {value}", f"set {key}: 1 or more")
    max_steps = getattr(training_args, "max_steps", -1)
    if max_steps == 0 or max_steps < -1:
        raise UserError(f"max_steps must be positive (or -1 for epochs), got {max_steps}", "set max_steps: 100, or -1 with num_train_epochs")
    for key in ("learning_rate", "num_train_epochs", "weight_decay", "warmup_ratio", "beta"):
        value = getattr(training_args, key, None)
        if isinstance(value, float) and (not math.isfinite(value) or value < 0):
            raise UserError(f"{key} must be a finite number >= 0, got {value}", f"set {key} to a number like 1e-5")
    check_wandb_login(getattr(training_args, "report_to", None) or [])


def check_wandb_login(report_to) -> None:
    """report_to: wandb online needs a key; without one the run would stop at its first log, after setup."""
    targets = [report_to] if isinstance(report_to, str) else list(report_to)
    if "wandb" not in targets and "all" not in targets:
        return
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1"):
        return
    if os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace"):
            return
    except OSError:
        pass
    raise UserError("report_to includes wandb, but no W&B key is set and WANDB_MODE is not offline",
                    "export WANDB_API_KEY (or run `wandb login`), set WANDB_MODE=offline, or use report_to: none")


def check_eval_settings(script_args, output_dir: str) -> None:
    """A recipe's per-checkpoint eval settings, checked at training start (not at the first checkpoint):
    every setting, and each task's data loads."""
    if script_args.eval_mode == "none":
        return
    from sustain.eval.tasks import open_task
    from sustain.eval.validate import validate_eval_config
    from sustain.train.callbacks import SustainEvalCallback

    cfg = SustainEvalCallback(script_args).eval_config(Path(output_dir) / "checkpoint-0", Path(output_dir) / "eval")
    cfg = validate_eval_config(cfg, check_model=False)
    for name in cfg.tasks:
        task = open_task(name, cfg)
        try:
            if not task.load(cfg.split, cfg.limit):
                raise UserError(f"eval task {name!r} has no items (limit {cfg.limit})", "check eval_data and eval_limit")
        finally:
            task.close()


def key_values(entries: Sequence[str]) -> dict:
    """["digits=2", "ops=+,-"] -> {"digits": 2, "ops": ["+", "-"]} (numbers converted, commas make lists)."""
    out = {}
    for entry in entries:
        key, raw = entry.split("=", 1)
        out[key.strip()] = [_scalar(v) for v in raw.split(",")] if "," in raw else _scalar(raw)
    return out


def _scalar(text: str):
    text = text.strip()
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def run_main(fn) -> None:
    """Run an entry point as a process: one line and status 2 for a UserError (sustain.eval.errors)."""
    code = run_entry(fn)
    if code:
        raise SystemExit(code)
