"""`sustain`: the command line. User mistakes end as one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from sustain.eval.config import EvalConfig, from_dict, load_yaml
from sustain.eval.errors import UserError, argument_parser, run_entry


def _add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per config field, its help from the field's metadata (CLI flags override YAML);
    values are checked by from_dict."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata.get("help", "")
        if hints[f.name] is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                                help=f"{text} (default: {default})".strip())


def eval_config(args: argparse.Namespace) -> EvalConfig:
    values = load_yaml(args.config) if args.config else {}
    source = args.config or "config"
    for f in dataclasses.fields(EvalConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return from_dict(EvalConfig, values, source)


def cmd_eval(args) -> None:
    from sustain.eval.pipeline import run_eval
    from sustain.eval.report.console import print_summary

    cfg = eval_config(args)
    summary = run_eval(cfg)
    print_summary(summary, cfg.out)


def cmd_audit(args) -> None:
    from sustain.eval.audit import export_audit

    path = export_audit(args.run, n=args.n, seed=args.seed, fmt=args.format)
    print(f"audit sample written: {path} (to read: {path.with_suffix('.html')})")


def cmd_failures(args) -> None:
    from sustain.eval.audit import export_failures

    path = export_failures(args.run)
    print(f"failure examples written: {path}")


def cmd_summary(args) -> None:
    from sustain.eval.summary import write_summary
    from sustain.eval.report.console import print_summary

    print_summary(write_summary(args.run), args.run)


def cmd_report(args) -> None:
    from pathlib import Path

    from sustain.eval.report.build import build_report

    path = build_report([Path(p) for p in args.inputs], Path(args.out), wandb_mode=args.wandb,
                        project=args.wandb_project, group=args.wandb_group, notes=args.notes,
                        allow_mixed_settings=args.allow_mixed_settings)
    print(f"report written: {path}")


def _layer_list(text: str) -> list[int]:
    try:
        layers = list(dict.fromkeys(int(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer numbers like 0,1 - got {text!r}") from None
    if any(layer < 0 for layer in layers):
        raise argparse.ArgumentTypeError(f"layer numbers start at 0 - got {text!r}")
    return layers


def _number(kind, lo, hi=None):
    """An argparse type: a finite number of `kind` within [lo, hi]."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected a number from {lo} to {hi if hi is not None else 'any'}, got {text!r}")
        return value
    return parse


def cmd_attention(args) -> None:
    from sustain.eval.attention.ablation_stage import AblationSettings, run_ablation_stage
    from sustain.eval.attention.run_folder import local_generator, refuse_remote, run_config
    from sustain.eval.attention.stage import run_attention_stage
    from sustain.eval.scoring import fmt
    from sustain.eval.summary import write_summary

    cfg = run_config(args.run)
    refuse_remote(cfg, args.run)
    layers = args.layers if args.layers is not None else cfg.attention_layers
    overrides = {"factor": args.factor, "control_factor": args.control_factor, "after_step": args.after_step,
                 "limit": args.ablation_limit,
                 "layers": tuple(args.ablation_layers) if args.ablation_layers is not None else None}
    settings = dataclasses.replace(AblationSettings.from_config(cfg),
                                   **{k: v for k, v in overrides.items() if v is not None})
    from sustain.eval.run_files import RunLock
    from sustain.eval.validate import validate_eval_config

    validate_eval_config(dataclasses.replace(cfg, attention_layers=layers, ablation_layers=settings.layers and list(settings.layers)))
    with RunLock(args.run):  # one writer: an eval still running into this folder is waited for by the user
        generator = local_generator(cfg)  # loaded once, shared by both stages
        try:
            attention = run_attention_stage(args.run, generator, layers=layers, batch_size=args.batch_size)
            ablation = run_ablation_stage(args.run, generator, settings) if args.ablation else None
        finally:
            generator.close()
    write_summary(args.run)
    gap = attention["gap"]
    if gap["value"] is None:
        lines = [f"attention gap  undefined ({gap.get('reason')})"]
    else:
        interval = f" [{gap['lo']:.4f}, {gap['hi']:.4f}]" if gap["lo"] is not None else ""
        lines = [f"attention gap  {gap['value']:+.4f}{interval} n={gap['n']} "
                 f"({gap['n_failed']} failed vs {gap['n_solved']} solved; share of context, within "
                 f"{gap['n_strata']} task x family x k strata)"]
    if ablation:
        lines += [f"recovered      {fmt(ablation['recovered'])} (failed, attention x{settings.factor:g}); "
                  f"net of factor-1 control {fmt(ablation['recovered_net'])}",
                  f"broken         {fmt(ablation['broken'])} (solved, attention x{settings.control_factor:g}); "
                  f"net of factor-1 control {fmt(ablation['broken_net'])}"]
    lines.append(f"run folder     {args.run} (attention_summary.json, summary.json)")
    print("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = argument_parser(prog="sustain", description="SustainScore (arXiv 2601.22047) on any model or checkpoint")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("eval", help="baseline, constraints, constrained run, scores (resumable)")
    e.add_argument("--config", help="YAML file with EvalConfig keys; flags override it")
    _add_config_flags(e, EvalConfig)
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("summary", help="recompute summary.json from a run folder's records")
    s.add_argument("run")
    s.set_defaults(func=cmd_summary)

    a = sub.add_parser("audit", help="export a seeded sample of (constraint, verdict and reason, original and constrained output) rows, plus an HTML page")
    a.add_argument("run")
    a.add_argument("--n", type=_number(int, 0, 10**7), default=50)
    a.add_argument("--seed", type=_number(int, 0, 2**32 - 1), default=0)
    a.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    a.set_defaults(func=cmd_audit)

    f = sub.add_parser("failures", help="export every failure (solved at baseline, failed constrained) with its class")
    f.add_argument("run")
    f.set_defaults(func=cmd_failures)
    t = sub.add_parser("attention", help="attention on the constraint (and the causal ablation) for a finished eval of a local model")
    t.add_argument("run", help="the eval run folder (run.json names the model)")
    t.add_argument("--layers", type=_layer_list, default=None, help="layers per-step attention averages, e.g. 0,1 (default: run.json's, else all)")
    t.add_argument("--batch-size", type=_number(int, 1, 1 << 16), default=8, help="generations per teacher-forced forward pass")
    t.add_argument("--ablation", action="store_true", help="also regenerate with the constraint's attention scaled")
    t.add_argument("--factor", type=_number(float, 0.0, 1e6), default=None, help="scale on failed generations (default 0: removed)")
    t.add_argument("--control-factor", type=_number(float, 0.0, 1e6), default=None, help="scale on solved generations (default 4)")
    t.add_argument("--after-step", type=_number(int, 0, 1 << 20), default=None, help="leave the first N decoding steps untouched (default 0)")
    t.add_argument("--ablation-layers", type=_layer_list, default=None, help="layers to scale, e.g. 0,1 (default all)")
    t.add_argument("--ablation-limit", type=_number(int, 0, 10**6), default=None, help="at most N generations per direction")
    t.set_defaults(func=cmd_attention)

    r = sub.add_parser("report", help="curves and tables rebuilt from run folders (an eval, a training run, or a comparison root)")
    r.add_argument("inputs", nargs="+", help="run folders: eval run, training output_dir, or comparison root")
    r.add_argument("--out", required=True, help="folder for report.md, report.json and the PNG plots")
    r.add_argument("--wandb", choices=["offline", "online"], default=None, help="also log the curves to W&B")
    r.add_argument("--wandb-project", default="sustain-suite")
    r.add_argument("--wandb-group", default=None)
    r.add_argument("--notes", default=None, help="free text added to the report")
    r.add_argument("--allow-mixed-settings", action="store_true",
                   help="overlay curves whose evals used different settings (tasks, data, families, k, token "
                        "budget, temperature, position, sandbox); the report lists the differences")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    def parse_and_run() -> int | None:
        try:
            args, extra = build_parser().parse_known_args(argv)
        except SystemExit as stop:  # --help printed its text
            return stop.code if isinstance(stop.code, int) else 0
        if extra:
            raise UserError(f"sustain {args.command}: unrecognized arguments: {' '.join(extra)[:200]}",
                            f"see `sustain {args.command} --help` for the valid arguments")
        return args.func(args)

    return run_entry(parse_and_run)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
