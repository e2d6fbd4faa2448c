"""`make demo`: the suite's whole job on the built-in tiny model, on a CPU, offline.

    sustain demo [--out runs/demo] [--quick]

Stages, each skipping what an earlier run of the same command finished (rerun to resume):
  1. base model   a ~0.5M-parameter Llama pretrained on `arith` (train/tiny.py), 30% of its prompts
                  carrying a self-evident instruction of 4 of the pool's 8 types; cached per config
                  under $SUSTAIN_CACHE_DIR/tiny-models (default .cache/), shared with the tests
  2. base eval    SustainScore of the base model: step 0 of every curve (<out>/base/eval/checkpoint-0)
  3-5. paradigms  recipes/demo/{sft,grpo,grpo_constraints}.yaml from that base, every checkpoint
                  evaluated inline (<out>/<paradigm>/eval/checkpoint-N)
  6. report       <out>/report/report.md with plots, and W&B runs (offline unless WANDB_MODE says otherwise)

--quick runs every stage on a few steps and items, from the test suite's default tiny model.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sustain.eval.errors import argument_parser

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "demo"

# The demo's base model. Instructions from a subset of the pool make its robustness intermediate at
# step 0, so the paradigms have room to move it either way: measured, the plain-trained default tiny
# model keeps 0 of 200 solved items under the eval's constraints, this one ~0.7 (see NOTES).
DEMO_BASE = {
    "steps": 1000,  # two-digit addition is learnt near step 800 (the loss drops 10x there)
    "instruction_rate": 0.3,
    "instruction_ids": ["length_constraints:max_words", "length_constraints:min_words",
                        "length_constraints:max_sentences", "keywords:forbidden_words"],
}
QUICK_BASE: dict = {}  # TinyConfig's defaults: the model the tests' tiny_model fixture caches

QUICK_EVAL = ("--eval.limit", "12", "--eval.batch_size", "12")
QUICK_STEPS = ("--max_steps", "4", "--save_steps", "2", "--logging_steps", "1")
QUICK_GRPO = ("--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "24")


@dataclass(frozen=True)
class Paradigm:
    name: str  # folder under --out and curve name in the report
    kind: str  # trainer: sft | grpo
    recipe: str  # file in recipes/demo
    what: str  # one line for the display and run_info.json
    quick: tuple[str, ...]  # recipe overrides for --quick

    def argv(self, base: Path, out: Path, quick: bool, extra: tuple[str, ...] = ()) -> list[str]:
        # the step bar is the display (transformers turns it off when its log level is above warning)
        return ["--config", str(RECIPES / self.recipe), "--model_name_or_path", str(base),
                "--output_dir", str(out / self.name), "--disable_tqdm", "false", *(self.quick if quick else ()), *extra]


PARADIGMS = (
    Paradigm("sft", "sft", "sft.yaml", "SFT on plain worked solutions (the analog of SFT on long CoT)",
             (*QUICK_STEPS, *QUICK_EVAL, "--dataset_size", "64")),
    Paradigm("grpo", "grpo", "grpo.yaml", "GRPO on plain prompts, rewarded for the right answer",
             (*QUICK_STEPS, *QUICK_EVAL, *QUICK_GRPO, "--dataset_size", "64")),
    Paradigm("grpo_constraints", "grpo", "grpo_constraints.yaml",
             "GRPO on prompts with self-evident constraints mined from its own outputs; reward: right answer AND constraints kept",
             (*QUICK_STEPS, *QUICK_EVAL, *QUICK_GRPO, "--constraint_pool", "24")),
)

NOTES = """\
**What this demo is.** A ~0.5M-parameter Llama-style model, built offline on the synthetic arithmetic task (two-digit addition
word problems with a one-line worked solution), pretrained with 30% of its prompts carrying a
self-evident instruction of 4 of 8 IFEval-style types (word and sentence limits, a forbidden word), in
the pool's own wordings, never the eval's. It is then post-trained three ways from that same base: SFT
on plain worked solutions (no instructions: a narrow target format, the toy analog of SFT on long
chain-of-thought), GRPO on plain prompts with an answer reward, and GRPO on prompts carrying
self-evident constraints mined from the policy's own solved outputs, rewarded only when the answer is
right AND the constraints are kept. Every checkpoint goes through the full SustainScore pipeline:
baseline run on held-out items, IFEval hard constraints back-translated from each solved output and
verified self-evident, constrained re-run, score with a 95% interval; the base model's eval is step 0
of every curve.

**What it shows.** The mechanism end to end (training, per-checkpoint evaluation, curves, paired
tests, W&B) and a toy analog of the paper's observation. Appending a constraint that the answer
already satisfies makes the model lose solved items: the follow rate stays near 1, the items are lost
to corrupted arithmetic, i.e. interference with the task itself. When this demo was designed, the same
model pretrained on plain prompts only kept none of 200 solved items (SustainScore 0.000
[0.000, 0.019]); the instruction-pretrained base keeps about 0.7. All three paradigms train with the
same optimiser, learning rate, steps and sequences per step, so the curves compare paradigms, not
tunings; how far they move, and in which order, is this run's to show (one training seed: the spread
over seeds is benchmarks/bench_demo_seeds.py's).

**What it does not show.** Nothing quantitative about real LLMs: this model follows no instruction in
any real sense (it has learnt to ignore appended text of familiar shapes, or not), and which
constraints break it does not follow which instruction types its pretraining saw (the eval's IFEval
wordings are new to it for every type). Its numbers depend on the seed and on the pretraining mix.
The eval's constraints are the hard IFEval ones only (length, keywords, punctuation, case): no soft
LLM-written constraints offline. The constraint-augmented paradigm trains on constraints from the same
extractor the eval uses (held-out items, same constraint types), so its rise is in-distribution
robustness, not transfer to new kinds of instructions. One run per paradigm: the intervals are over
items, not over training seeds.
"""


# ---------------------------------------------------------------- display


class Display:
    """Numbered stage headers and a closing table of stage times (the trainers and the eval show their own bars)."""

    def __init__(self, total: int):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.total, self.index, self.times = total, 0, []
        self.started = time.time()

    @contextlib.contextmanager
    def stage(self, title: str, detail: str = ""):
        self.index += 1
        self.console.rule(f"[bold][{self.index}/{self.total}] {title}")
        if detail:
            self.console.print(detail)
        t0, status = time.time(), ["done"]
        try:
            yield status
        finally:
            seconds = time.time() - t0
            self.times.append((title, status[0], seconds))
            self.console.print(f"[green]{title}: {status[0]}[/green] ({seconds:.0f} s; {self.elapsed()} in all)")

    def elapsed(self) -> str:
        s = int(time.time() - self.started)
        return f"{s // 60}:{s % 60:02d}"

    def summary(self, lines: list[str]) -> None:
        from rich.table import Table

        table = Table(title=f"sustain-suite demo: {self.elapsed()}")
        for column in ("stage", "status", "seconds"):
            table.add_column(column)
        for title, status, seconds in self.times:
            table.add_row(title, status, f"{seconds:.0f}")
        self.console.print(table)
        for line in lines:
            self.console.print(line)


def step_bar_class():
    from transformers.trainer_callback import ProgressCallback

    class StepBar(ProgressCallback):
        """The trainer's step bar, with the last loss / reward as its postfix instead of printed dicts."""

        SHOWN = ("loss", "reward", "rewards/constrained_accuracy/mean")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                shown = {k.split("/")[-2] if "/" in k else k: f"{float(logs[k]):.3g}" for k in self.SHOWN if k in logs}
                self.training_bar.set_postfix(shown, refresh=False)

    return StepBar


# ---------------------------------------------------------------- stages


def build_base(quick: bool, status: list) -> Path:
    from sustain.train.tiny import TinyConfig, cache_dir, ensure_tiny_base

    options = QUICK_BASE if quick else DEMO_BASE
    folder = cache_dir() / f"tiny-base-{TinyConfig.from_options(**options).key()}"
    if folder.is_dir():
        status[0] = "reused (cached)"
        return folder
    return ensure_tiny_base(cache_dir(), progress=True, **options)


def parse(paradigm: Paradigm, base: Path, out: Path, quick: bool, extra: tuple[str, ...] = ()):
    from sustain.train.config import parse_recipe

    return parse_recipe(paradigm.kind, paradigm.argv(base, out, quick, extra))


def eval_callback(script_args):
    from sustain.train.callbacks import SustainEvalCallback

    return SustainEvalCallback(script_args)


def check_same_eval(parsed: dict[str, tuple]) -> None:
    """The curves are compared step by step: every paradigm must run the same eval."""
    from sustain.train.recipe_value import check_same_eval as check, eval_settings

    check({name: eval_settings(script_args) for name, (script_args, _, _) in parsed.items()})


def eval_base(base: Path, out: Path, script_args, status: list) -> None:
    from sustain.train.callbacks import SUMMARY

    folder = out / "base" / "eval" / "checkpoint-0"
    if (folder / SUMMARY).exists():
        status[0] = "already evaluated"
        return
    eval_callback(script_args).evaluate(base, folder)


def unevaluated(output_dir: Path) -> list[Path]:
    from sustain.train.callbacks import SUMMARY, eval_root
    from sustain.train.eval_checkpoint import run_checkpoints

    if not output_dir.is_dir():
        return []
    return [c for c in run_checkpoints(output_dir) if not (eval_root(output_dir) / c.name / SUMMARY).exists()]


def finished(output_dir: Path) -> bool:
    """The final model is saved (after the last inline eval) and no checkpoint lacks its eval."""
    return (output_dir / "config.json").exists() and not unevaluated(output_dir)


@contextlib.contextmanager
def restored_environ(*keys: str):
    """Put these variables back as they were afterwards: a resumed paradigm continues its W&B run through
    WANDB_RUN_ID (sustain.train.callbacks.resume_wandb_run), and a demo sets WANDB_DIR to its folder;
    the next paradigm, or the next demo in the same process, must not inherit them."""
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_run_info(paradigm: Paradigm, base: Path, out: Path) -> None:
    from sustain.eval.records import write_json_atomic

    write_json_atomic(out / paradigm.name / "run_info.json",
                      {"paradigm": paradigm.name, "description": paradigm.what,
                       "recipe": str(RECIPES / paradigm.recipe), "base_model": str(base)})


def report_mode() -> str | None:
    from sustain.eval.report.wandb_log import MODES

    mode = os.environ.get("WANDB_MODE", "offline")
    return mode if mode in MODES else None  # e.g. "disabled": the report is built without W&B


def headline(report_json: Path) -> list[str]:
    """SustainScore (k=1, per task and family) at step 0 and at the last checkpoint, per paradigm."""
    from sustain.eval.scoring import fmt

    report = json.loads(report_json.read_text())
    lines = []
    for name, points in report["series"].items():
        for cell in report["cells"]:
            done = [p for p in points.get(f"score/{cell}", []) if p["value"] is not None]
            if done:
                lines.append(f"  {name}: SustainScore {cell} step {done[0]['step']} {fmt(done[0])} -> "
                             f"step {done[-1]['step']} {fmt(done[-1])}")
    return lines


# ---------------------------------------------------------------- main


def quiet_libraries() -> None:
    """Keep the console to the stage headers and progress bars."""
    import datasets
    import transformers
    import transformers.trainer

    datasets.disable_progress_bars()  # per-map bars ("Tokenizing train dataset") for every run
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" per checkpoint
    # The trainers print every log as a dict (GRPO's run to ~30 metrics); the numbers go to W&B, so the
    # console shows the headline ones on the step bar instead. Trainer reads this global when built.
    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = step_bar_class()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renamed-argument notices
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_demo(out: Path, quick: bool = False, seed: int | None = None) -> Path:
    """Every stage (skipping finished work); returns the path of report.md. seed: every paradigm's
    training seed (the recipes' `seed`), for runs over several seeds (benchmarks/bench_demo_seeds.py)."""
    out = out.resolve()
    with restored_environ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_SILENT"):
        # Offline by default so nothing needs a network; the user's own settings win.
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(out))
        os.environ.setdefault("WANDB_PROJECT", "sustain-suite-demo")
        os.environ.setdefault("WANDB_SILENT", "true")
        return _run_demo(out, quick, ("--seed", str(seed)) if seed is not None else ())


def _run_demo(out: Path, quick: bool, extra: tuple[str, ...]) -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    # One thread: this model's ops are too small to split, and two threads contend on a shared CPU
    # (train/tiny.py measured 5-8x slower steps with two).
    torch.set_num_threads(1)

    display = Display(total=3 + len(PARADIGMS))
    display.console.print(f"sustain-suite demo{' (quick)' if quick else ''} -> {out}  (W&B: {os.environ['WANDB_MODE']})")
    with display.stage("base model", "tiny Llama pretrained on two-digit sums, 30% of prompts with an instruction of 4 of 8 types"
                       if not quick else "the test suite's default tiny model") as status:
        base = build_base(quick, status)
        display.console.print(f"model: {base}")
    parsed = {p.name: parse(p, base, out, quick, extra) for p in PARADIGMS}
    check_same_eval(parsed)
    first = parsed[PARADIGMS[0].name][0]
    with display.stage("base eval", f"SustainScore of the base model on {first.eval.limit} held-out items: step 0") as status:
        eval_base(base, out, first, status)
    for paradigm in PARADIGMS:
        _, training_args, _ = parsed[paradigm.name]
        detail = (f"{paradigm.what}\n{training_args.max_steps} steps, a checkpoint and its eval every "
                  f"{training_args.save_steps}")
        with display.stage(paradigm.name, detail) as status:
            run_paradigm(paradigm, base, out, quick, status, extra)
    with display.stage("report") as status:
        from sustain.eval.report.build import build_report

        mode = report_mode()
        md = build_report([out], out / "report", wandb_mode=mode, project=os.environ["WANDB_PROJECT"],
                          group=f"demo-{out.name}", notes=NOTES)
        status[0] = f"written{' (+ W&B ' + mode + ')' if mode else ''}"
    lines = [f"report: {md}", *headline(md.parent / "report.json"), f"plots: {md.parent}/*.png"]
    if os.environ.get("WANDB_MODE") == "offline":
        lines.append(f"W&B offline runs: {os.environ['WANDB_DIR']}/wandb (upload: wandb sync <run folder>)")
    display.summary(lines)
    return md


def run_paradigm(paradigm: Paradigm, base: Path, out: Path, quick: bool, status: list, extra: tuple[str, ...] = ()) -> None:
    """Train (resuming from the last checkpoint), then evaluate any checkpoint a kill left unevaluated."""
    from sustain.train.callbacks import eval_root

    output_dir = out / paradigm.name
    if finished(output_dir):
        status[0] = "already trained and evaluated"
        return
    write_run_info(paradigm, base, out)
    module = importlib.import_module(f"sustain.train.{paradigm.kind}")  # sft | grpo: run(...)
    with restored_environ("WANDB_RUN_ID", "WANDB_RESUME"):
        # parsed again: parse_recipe's objects are consumed by the trainer (model_init_kwargs, ...)
        module.run(*parse(paradigm, base, out, quick, extra))
    leftover = unevaluated(output_dir)
    if leftover:
        callback = eval_callback(parse(paradigm, base, out, quick, extra)[0])
        for checkpoint in leftover:
            callback.evaluate(checkpoint, eval_root(output_dir) / checkpoint.name)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(prog="sustain demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo); rerun to resume")
    parser.add_argument("--quick", action="store_true", help="every stage on a few steps and items (tests)")
    parser.add_argument("--seed", type=int, default=None, help="training seed of every paradigm (default: the recipes')")
    args = parser.parse_args(argv)
    run_demo(Path(args.out), quick=args.quick, seed=args.seed)


if __name__ == "__main__":
    from sustain.train.config import run_main

    run_main(main)
