"""Recipe values for shell scripts, read by the recipe parser itself (defaults and overrides included).

    sustain recipe-value get [--kind] RECIPE KEY [KEY ...]   one value per line (--kind: the trainer first)
    sustain recipe-value kind RECIPE                         sft | grpo
    sustain recipe-value write [--set KEY=VALUE ...] SRC RUN_DIR [SRC RUN_DIR ...]

`write` is the comparison driver's: it writes RUN_DIR/recipe.yaml, the recipe SRC with the overrides
(`--set NAME:KEY=VALUE` only in the run whose folder is named NAME; `--set eval.KEY=VALUE` sets a key
of the eval block), its eval block written out in full (an included file is copied in, so the run
folder holds what ran) and `output_dir: RUN_DIR`, validates it and the eval block (unknown keys and
bad values fail here, before anything is queued), checks that the recipes agree on their eval
block (else the curves are not comparable),
and prints one line per recipe: "KIND SAVES", SAVES being how many checkpoints the run leaves in
RUN_DIR (0 when that depends on the data size).
A recipe does not name its trainer: its keys do (reward_funcs is GRPO-only, max_length SFT-only);
write `sft:PATH` or `grpo:PATH` where a recipe parses as both.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from sustain.eval.errors import UserError, argument_parser

from sustain.train import eval_block
from sustain.train.config import _load_recipe, _trainer_config, _valid_keys, parse_recipe, run_main, script_arguments

KINDS = ("sft", "grpo")


def split_kind(spec: str) -> tuple[str | None, str]:
    """"grpo:recipes/x.yaml" -> ("grpo", "recipes/x.yaml"); a plain path -> (None, path)."""
    head, sep, tail = spec.partition(":")
    return (head, tail) if sep and head in KINDS else (None, spec)


def parse_any(spec: str, need_kind: bool = True) -> tuple[str, tuple]:
    """(kind, parse_recipe's triple) for the one trainer whose arguments accept the recipe.

    need_kind=False: the first trainer that accepts it.
    """
    kind, path = split_kind(spec)
    if kind:
        return kind, parse_recipe(kind, ["--config", path])
    parsed, errors = {}, {}
    for k in KINDS:
        try:
            parsed[k] = parse_recipe(k, ["--config", path])
            if not need_kind:
                return k, parsed[k]
        except UserError as exc:
            errors[k] = exc
    if len(parsed) == 1:
        (k, triple), = parsed.items()
        return k, triple
    if not parsed:  # the trainer the recipe is closest to tells the likeliest mistake (a typo, ...)
        raise errors[min(KINDS, key=lambda k: len(unknown_keys(path, k)))]
    raise UserError(f"{path} parses as both an SFT and a GRPO recipe", f"name the trainer: sft:{path} or grpo:{path}")


def unknown_keys(path: str, kind: str) -> list[str]:
    from trl import ModelConfig

    valid = set(_valid_keys((script_arguments(kind), _trainer_config(kind), ModelConfig)))
    return [k for k in _load_recipe(path) if k not in valid and k not in ("env", eval_block.KEY)]


def value(triple: tuple, key: str):
    head, dot, sub = key.partition(".")
    if dot and head == eval_block.KEY and hasattr(triple[0].eval, sub):
        return getattr(triple[0].eval, sub)
    for args in triple:
        if hasattr(args, key):
            return getattr(args, key)
    raise UserError(f"no recipe key {key!r}", "use a field of the script arguments, the trainer config or ModelConfig")


def max_saves(training_args) -> int:
    """Checkpoints a run can leave in output_dir (one every save_steps and one at the end); 0 if unknown."""
    if str(training_args.save_strategy) not in ("steps", "SaveStrategy.STEPS") or training_args.max_steps <= 0:
        return 0
    saves = math.ceil(training_args.max_steps / training_args.save_steps)
    if training_args.save_total_limit:  # older checkpoints are deleted (the best one is kept too)
        saves = min(saves, training_args.save_total_limit + int(bool(training_args.load_best_model_at_end)))
    return saves


def merged_recipe(path: str, pairs: list[str], run_name: str) -> dict:
    """The recipe's YAML mapping, its eval block written out, with [NAME:]KEY=VALUE overrides (values
    read as YAML: 4 -> int, [a, b] -> list; eval.KEY sets a key of the eval block)."""
    import yaml

    data = _load_recipe(path)
    data[eval_block.KEY] = eval_block.read_block(data.get(eval_block.KEY), Path(path).parent, path)
    for pair in pairs:
        target, sep, val = pair.partition("=")
        name, _, key = target.rpartition(":")
        if not sep or not key:
            raise UserError(f"expected [NAME:]KEY=VALUE, got {pair!r}", "write e.g. --set max_steps=4 or --set sft:max_steps=4")
        if name and name != run_name:
            continue
        parsed = yaml.safe_load(val) if val else val
        head, dot, sub = key.partition(".")
        if dot and head == eval_block.KEY:
            data[eval_block.KEY][sub] = parsed
        else:
            data[key] = parsed
    return data


def eval_settings(script_args) -> dict:
    """What makes two evals the same eval: the whole eval block (the slurm script and sbatch flags say
    where it runs, not what it measures)."""
    return eval_block.settings(script_args.eval)


def check_same_eval(recipes: dict[str, dict]) -> None:
    """Paradigms are compared checkpoint by checkpoint: their evals must be the same eval."""
    (first, ref), *rest = recipes.items()
    for path, settings in rest:
        diff = [k for k in ref if settings[k] != ref[k]]
        if diff:
            k = diff[0]
            raise UserError(f"{path} and {first} evaluate differently ({k}: {settings[k]!r} vs {ref[k]!r})",
                            f"give the recipes the same eval block (one shared file) or pass --set eval.{k}=VALUE")


def warn_pruned_checkpoints(src: str, script_args, training_args) -> None:
    """Evaluated after training, a run only has the checkpoints save_total_limit kept."""
    kept = max_saves(training_args)
    if script_args.eval_mode == "none" and kept and training_args.max_steps > 0:
        saves = math.ceil(training_args.max_steps / training_args.save_steps)
        if kept < saves:
            print(f"warning: {src}: save_total_limit keeps {kept} of {saves} checkpoints, so only those are "
                  "evaluated (fix: raise save_total_limit, or evaluate during training: --eval inline)",
                  file=sys.stderr)


def write(pairs: list[str], specs: list[str]) -> list[str]:
    import yaml

    if not specs or len(specs) % 2:
        raise UserError("write needs SRC RUN_DIR pairs", "pass e.g. recipes/demo/sft.yaml runs/cmp/sft")
    lines, evals = [], {}
    for src, run_dir in zip(specs[::2], specs[1::2]):
        kind, _ = parse_any(src)  # a mistake in the recipe itself is reported against its own file
        out = Path(run_dir).resolve() / "recipe.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        merged = {**merged_recipe(split_kind(src)[1], pairs, out.parent.name), "output_dir": str(out.parent)}
        out.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
        try:  # validate the file the jobs will read, so what was checked is what runs
            _, (script_args, training_args, _) = parse_any(f"{kind}:{out}")
        except UserError as exc:
            out.unlink()
            raise UserError(f"with the --set overrides, {exc.problem}", exc.fix) from None
        if script_args.eval_mode == "none":  # else parse_recipe checked it; evals after training need it too
            eval_block.check_at_start(script_args.eval, training_args.output_dir, str(out))
        evals[src] = eval_settings(script_args)
        warn_pruned_checkpoints(src, script_args, training_args)
        lines.append(f"{kind} {max_saves(training_args)}")
    check_same_eval(evals)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(prog="sustain recipe-value", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="print recipe values, one per line")
    get.add_argument("--kind", action="store_true", help="print the trainer (sft | grpo) first")
    get.add_argument("recipe")
    get.add_argument("keys", nargs="+")
    kind = sub.add_parser("kind", help="print the recipe's trainer: sft or grpo")
    kind.add_argument("recipe")
    wr = sub.add_parser("write", help="validate recipes with overrides and write the merged YAML")
    wr.add_argument("--set", dest="pairs", action="append", default=[], metavar="[NAME:]KEY=VALUE")
    wr.add_argument("specs", nargs="+", metavar="SRC RUN_DIR")
    args = parser.parse_args(argv)

    if args.command == "get":
        kind, triple = parse_any(args.recipe)
        lines = [kind] * args.kind + ["" if (v := value(triple, k)) is None else str(v) for k in args.keys]
    elif args.command == "kind":
        lines = [parse_any(args.recipe)[0]]
    else:
        lines = write(args.pairs, args.specs)
    sys.stdout.write("".join(f"{line}\n" for line in lines))


if __name__ == "__main__":
    run_main(main)
