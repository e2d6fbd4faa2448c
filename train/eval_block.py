"""A recipe's `eval:` block: the per-checkpoint eval's settings, which ARE sustain.eval.config.EvalConfig.

    eval:                              # EvalConfig keys (`sustain eval --help`), model and out excepted:
      limit: 500                       # those are the checkpoint and its eval folder
      k_max: 3
    eval: eval/sustain.yaml            # or a file of them, relative to the recipe (compared recipes share one)
    eval: {include: eval/sustain.yaml, limit: 50}   # or a file plus keys that override it

On the command line `--eval.KEY VALUE` overrides a key. This module reads the block without parsing
the rest of the recipe (an eval job needs nothing else) and checks it at training start.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from sustain.eval.config import EvalConfig, from_dict, load_yaml
from sustain.eval.errors import UserError

KEY = "eval"
PER_CHECKPOINT = ("model", "out")  # EvalConfig keys that each checkpoint sets


def read_block(value, recipe_dir: str | Path, where: str) -> dict:
    """The recipe's `eval:` value (mapping, file path, or mapping with `include:`) as EvalConfig keys."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = {"include": value}
    if not isinstance(value, dict):
        raise UserError(f"the eval block of {where} must be a mapping or a file path, got {value!r}",
                        "write eval: {limit: 100, k_max: 3} or eval: path/to/eval.yaml")
    block = dict(value)
    include = block.pop("include", None)
    if include is not None:
        path = Path(str(include)).expanduser()
        shared = load_yaml(path if path.is_absolute() else Path(recipe_dir) / path, "eval settings file")
        if "include" in shared:
            raise UserError(f"{include} includes another file", "write its settings into it: one level of include")
        block = {**shared, **block}
    for key in PER_CHECKPOINT:
        if key in block:
            raise UserError(f"eval key {key!r} in {where} is set for each checkpoint", f"remove {key} from the eval block")
    return block


def to_config(block: dict, where: str) -> EvalConfig:
    return from_dict(EvalConfig, block, f"the eval block of {where}")


def settings(config: EvalConfig) -> dict:
    """The block form of a config (model and out left out): what an eval job is handed."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in PER_CHECKPOINT}


def recipe_eval_config(recipe: str | Path) -> EvalConfig:
    """A recipe's eval settings, read without a full SFT/GRPO parse."""
    path = Path(recipe)
    data = load_yaml(path, "recipe")
    return to_config(read_block(data.get(KEY), path.parent, str(path)), str(path))


def split_flags(args: list[str]) -> dict:
    """Take `--eval.KEY VALUE` and `--eval.KEY=VALUE` out of args (in place); returns KEY -> VALUE text."""
    found, i = {}, 0
    while i < len(args):
        if not args[i].startswith(f"--{KEY}."):
            i += 1
            continue
        key, sep, val = args[i][len(KEY) + 3:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise UserError(f"--{KEY}.{key} needs a value", f"pass --{KEY}.{key} VALUE")
            val = args.pop(i + 1)
        found[key] = val
        args.pop(i)
    return found


def per_checkpoint(config: EvalConfig, checkpoint: str | Path, out: str | Path) -> EvalConfig:
    return dataclasses.replace(config, model=str(checkpoint), out=str(out))


def check_at_start(config: EvalConfig, output_dir: str | Path, where: str) -> None:
    """The settings checked when training starts, not at the first checkpoint: names and ranges as the
    pipeline checks them, and each task's items load (unknown task, missing data file)."""
    from sustain.eval.pipeline import Pipeline
    from sustain.eval.tasks import open_task

    cfg = per_checkpoint(config, Path(output_dir) / "checkpoint-0", Path(output_dir) / KEY)
    try:
        Pipeline._validate(cfg)
        if cfg.limit is not None and cfg.limit < 0:
            raise UserError(f"limit must be >= 0, got {cfg.limit}", "set limit to 0 or more, or null for all items")
        for name in cfg.tasks:
            task = open_task(name, cfg)
            try:
                if not task.load(cfg.split, cfg.limit):
                    raise UserError(f"task {name!r} has no items (split {cfg.split!r}, limit {cfg.limit})",
                                    "check the data file, the split and the limit")
            finally:
                task.close()
    except UserError as exc:
        raise UserError(f"the eval block of {where}: {exc.problem}", exc.fix) from None
