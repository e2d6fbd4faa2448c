"""`sustain`: one command for the whole suite. Evaluation subcommands live in sustain.eval.cli;
training-side ones are routed here so that eval never imports train."""
from __future__ import annotations

import importlib
import os
import sys

# command -> module whose main(argv) runs it; `sustain train KIND` picks the trainer by KIND
TRAIN_SIDE = {
    "demo": "sustain.train.demo",
    "sync": "sustain.train.callbacks",
    "eval-checkpoint": "sustain.train.eval_checkpoint",
    "recipe-value": "sustain.train.recipe_value",
    "tiny": "sustain.train.tiny",
}
TRAINERS = {"sft": "sustain.train.sft", "grpo": "sustain.train.grpo"}

USAGE = """usage: sustain COMMAND ...

evaluation (sustain COMMAND --help for each):
  eval, summary, audit, failures, attention, report
training:
  train sft|grpo --config RECIPE.yaml [--key value ...]   TRL SFT / GRPO with per-checkpoint evals
  demo             the built-in tiny demo: base, three paradigms, report
  sync RUN         log finished checkpoint evals into the training run's W&B
  eval-checkpoint  evaluate one checkpoint (or one array index) with a recipe's eval settings
  recipe-value     read values out of recipes (used by the Slurm scripts)
  tiny             build the offline tiny base model
"""


def _fail(message: str) -> int:
    print(f"sustain: error: {message}", file=sys.stderr)
    return 2


def _safe_streams() -> None:
    """Under an ASCII locale, a non-ASCII name in a message must not crash the print that reports it."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _safe_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        if not rest or rest[0] not in TRAINERS:
            got = repr(rest[0]) if rest else "nothing"
            return _fail(f"`sustain train` needs a trainer, got {got} (fix: sustain train sft|grpo --config RECIPE.yaml)")
        module, rest = TRAINERS[rest[0]], rest[1:]
    elif command in TRAIN_SIDE:
        module = TRAIN_SIDE[command]
    else:
        module = "sustain.eval.cli"
        rest = argv
    from sustain.eval.errors import run_entry

    if module == "sustain.eval.cli":
        return importlib.import_module(module).main(rest)  # runs its own run_entry after argparse
    return run_entry(importlib.import_module(module).main, rest)


if __name__ == "__main__":
    sys.exit(main())
