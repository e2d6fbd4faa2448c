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
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sustain.eval.config import EvalConfig, load_yaml, unknown_key_error
from sustain.eval.errors import UserError, run_entry
from sustain.eval.generators.gguf import converted_folder, gguf_file
from sustain.eval.tasks import DEFAULT_TASK, TASKS
from sustain.train import eval_block

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
    """How training runs the per-checkpoint SustainScore eval (train/callbacks.py). What the eval does is
    the recipe's `eval:` block, an EvalConfig (train/eval_block.py)."""

    eval_mode: str = field(default="none", metadata={"help": "none | inline | sbatch"})
    eval_slurm_script: str = field(default="slurm/eval.slurm", metadata={"help": "the sbatch script (eval_mode sbatch)"})
    eval_sbatch_args: list[str] = field(default_factory=list, metadata={"help": "extra sbatch flags"})
    # From the recipe's eval: block and --eval.KEY flags; not an argparse field.
    eval: EvalConfig = field(default_factory=EvalConfig, init=False)


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
    return load_yaml(path, "recipe")


def _unknown_key_error(key: str, valid: Sequence[str], where: str, kind: str) -> UserError:
    name = key[len("eval_"):]
    if key.startswith("eval_") and name in {f.name for f in dataclasses.fields(EvalConfig)}:
        return UserError(f"unknown key {key!r} in {where}", f"eval settings are EvalConfig keys in the recipe's "
                         f"eval: block (eval: {{{name}: ...}}), or the flag --eval.{name}")
    return unknown_key_error(key, list(valid), where,
                             f"valid keys are the fields of the {kind} script arguments, ModelConfig and "
                             f"{_trainer_config(kind).__name__}, listed by `sustain train {kind} --help`, and "
                             f"{eval_block.KEY} (EvalConfig keys, `sustain eval --help`)")


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
    parser = TrlParser(types_, prog=f"sustain train {kind}", allow_abbrev=False,
                       epilog="The per-checkpoint eval's settings are the recipe's eval: block of EvalConfig keys "
                              "(`sustain eval --help`); --eval.KEY VALUE overrides one.")
    parser.error = lambda message: _bad_value(message, kind)  # argparse would print its 170-line usage
    args = list(sys.argv[1:] if argv is None else argv)
    valid = _valid_keys(types_)
    eval_flags = eval_block.split_flags(args)

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
        block = eval_block.read_block(values.pop(eval_block.KEY, None), Path(recipe_path).parent, recipe_path)
        for key in values:
            if key not in valid:
                raise _unknown_key_error(key, valid, recipe_path, kind)
    else:
        block = {}
    eval_config = eval_block.to_config({**block, **eval_flags}, recipe_path or "the command line")

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
    script_args.eval = eval_config
    _check(script_args, model_args)
    _check_training(training_args)
    if script_args.eval_mode != "none":
        eval_block.check_at_start(eval_config, training_args.output_dir, recipe_path or "the command line")
    script_args.recipe = recipe_path
    return script_args, training_args, model_args


def _check(script_args, model_args) -> None:
    if script_args.eval_mode not in EVAL_MODES:
        raise UserError(f"unknown eval_mode {script_args.eval_mode!r}", f"use one of: {', '.join(EVAL_MODES)}")
    if not model_args.model_name_or_path:
        raise UserError("no model given", "set model_name_or_path in the recipe or pass --model_name_or_path")
    for entry in script_args.task_options:
        if "=" not in entry:
            raise UserError(f"expected key=value, got {entry!r}", "write e.g. digits=2")
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

    hints, nullable = {}, set()
    for cls in dataclass_types:
        for f in dataclasses.fields(cls):
            hints.setdefault(f.name, f.type)
            if f.default is None:  # HfArgumentParser rewrites `int | None` to int in place: a None default marks it
                nullable.add(f.name)
    for key, value in values.items():
        hint = hints.get(key)
        if value is None and key in nullable:
            continue
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


def run_recipe(kind: str, run, argv: Sequence[str] | None = None):
    """Parse a recipe of this kind and train with it; the W&B login is checked first, since without
    a key the run would stop at its first log."""
    script_args, training_args, model_args = parse_recipe(kind, argv)
    check_wandb_login(training_args.report_to or [])
    return run(script_args, training_args, model_args)


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
