"""Find the run folders behind a report and read them; nothing else (no W&B, no logs) is consulted.

Layout contract (written by training and the Slurm driver):
  <root>/base/eval/checkpoint-0/          the base model's eval: step 0 of every paradigm
  <root>/<paradigm>/checkpoint-<step>/    TRL checkpoints
  <root>/<paradigm>/eval/checkpoint-<step>/  the eval run folder of that checkpoint (summary.json, ...)
  <root>/<paradigm>/run_info.json         {"paradigm": ..., "recipe": ..., "base_model": ...} (optional)

An input is one of: an eval run folder (summary.json), a training output_dir (eval/checkpoint-*
or checkpoint-*), or a comparison root (subfolders that are training output_dirs, and base/).
A checkpoint whose eval has no summary.json yet is kept as pending, never read as zeros.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from sustain.eval.checkpoints import checkpoint_step
from sustain.eval.errors import UserError, os_error
from sustain.eval.run_files import read_json_file, read_run_json

BASE = "base"
SUMMARY_KEYS = ("accuracy", "sustain")  # what every summary.json of this suite holds
FIX = ("pass an eval run folder (with summary.json), a training output_dir (with eval/checkpoint-N/), "
       "or a comparison root holding such output_dirs and base/")


@dataclass
class Checkpoint:
    step: int
    folder: Path  # the eval run folder (may not exist yet)
    summary: dict | None = None  # None while pending
    attention: dict | None = None  # attention_summary.json, when the attention stage ran
    pending: str | None = None  # why there is no summary yet

    @property
    def done(self) -> bool:
        return self.summary is not None


@dataclass
class Paradigm:
    name: str
    source: Path  # the training output_dir (or the run folder of a single-model input)
    info: dict = field(default_factory=dict)  # run_info.json
    checkpoints: list[Checkpoint] = field(default_factory=list)  # by step; base at step 0

    @property
    def done(self) -> list[Checkpoint]:
        return [c for c in self.checkpoints if c.done]

    @property
    def final(self) -> Checkpoint | None:
        """The last checkpoint with a summary (the base model counts when nothing else is done)."""
        done = self.done
        return done[-1] if done else None


def base_checkpoint(paradigms: list[Paradigm]) -> Checkpoint | None:
    """The base model's finished eval (<root>/base/eval/checkpoint-0), if any input has it."""
    return next((c for p in paradigms for c in p.done if c.step == 0 and c.folder.parent.parent.name == BASE), None)


def is_run_folder(path: Path) -> bool:
    return (path / "summary.json").is_file()


def is_output_dir(path: Path) -> bool:
    """A training output_dir: TRL checkpoints or their eval folders."""
    return any(checkpoint_step(p) is not None for d in (path, path / "eval") if d.is_dir() for p in d.iterdir())


def read_checkpoint(step: int, folder: Path) -> Checkpoint:
    summary_path = folder / "summary.json"
    if not folder.is_dir():
        return Checkpoint(step, folder, pending="eval not started (no eval run folder)")
    if not summary_path.is_file():
        stages = [f for f in ("baseline.jsonl", "constrained.jsonl") if (folder / f).is_file()]
        has = f"has {', '.join(stages)}" if stages else "no records yet"
        return Checkpoint(step, folder, pending=f"eval incomplete: no summary.json ({has})")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Checkpoint(step, folder, pending=f"summary.json unreadable ({type(exc).__name__}); rerun `sustain summary`")
    except OSError as exc:
        raise os_error("read", summary_path, exc) from None
    if not isinstance(summary, dict) or not all(isinstance(summary.get(k), dict) for k in SUMMARY_KEYS):
        return Checkpoint(step, folder, pending="summary.json is not a summary of this suite; rerun `sustain summary`")
    attention = summary.get("attention")
    attention_path = folder / "attention_summary.json"
    if attention_path.is_file():
        attention = read_json_file(attention_path)
    return Checkpoint(step, folder, summary=summary, attention=attention if isinstance(attention, dict) else None)


def _output_dir_steps(path: Path) -> dict[int, Path]:
    """step -> eval run folder, for every step that has a TRL checkpoint or an eval folder."""
    steps: dict[int, Path] = {}
    for d in (path, path / "eval"):
        if d.is_dir():
            for p in d.iterdir():
                s = checkpoint_step(p)
                if s is not None and p.is_dir():
                    steps[s] = path / "eval" / p.name
    return steps


def _base_checkpoint(root: Path) -> Checkpoint | None:
    folder = root / BASE / "eval" / "checkpoint-0"
    return read_checkpoint(0, folder) if folder.is_dir() else None


def _paradigm_name(path: Path) -> tuple[str, dict]:
    info_path = path / "run_info.json"
    info = read_json_file(info_path) if info_path.is_file() else {}
    if not isinstance(info, dict):
        raise UserError(f"{info_path} is not a JSON object", "restore it, or delete it (the folder name is used then)")
    return str(info.get("paradigm") or path.name), info


def read_output_dir(path: Path, base: Checkpoint | None, progress: tqdm | None = None) -> Paradigm:
    name, info = _paradigm_name(path)
    paradigm = Paradigm(name, path, info)
    if base is not None:
        paradigm.checkpoints.append(base)
    for step, folder in sorted(_output_dir_steps(path).items()):
        if step == 0 and base is not None:
            continue  # the base model's own eval is step 0
        paradigm.checkpoints.append(read_checkpoint(step, folder))
        if progress is not None:
            progress.update()
    return paradigm


def _single_run(path: Path) -> Paradigm:
    """One eval run folder: named after its training run when it sits in <output_dir>/eval/, else its model."""
    step = checkpoint_step(path)
    if step is not None and path.parent.name == "eval":
        name, info = _paradigm_name(path.parent.parent)
        return Paradigm(name, path.parent.parent, info, [read_checkpoint(step, path)])
    meta = read_run_json(path, required=False)
    model = meta["identity"].get("model") if meta else None
    return Paradigm(str(model or path.name), path, {}, [read_checkpoint(step or 0, path)])


def _expand(path: Path, progress: tqdm) -> list[Paradigm]:
    if not path.exists():
        raise UserError(f"report input {path} does not exist", FIX)
    if is_run_folder(path):
        return [_single_run(path)]
    if is_output_dir(path):
        return [read_output_dir(path, _base_checkpoint(path.parent), progress)]
    if path.is_dir():
        base = _base_checkpoint(path)
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and p.name != BASE and is_output_dir(p))
        paradigms = [read_output_dir(p, base, progress) for p in subdirs]
        if paradigms:
            return paradigms
        if base is not None:  # a root with only the base model evaluated so far
            return [Paradigm(BASE, path / BASE, {}, [base])]
    raise UserError(f"{path} is not a run folder: no summary.json, no eval/checkpoint-N/, "
                    "no subfolders that are training output_dirs", FIX)


def collect(inputs: list[Path]) -> list[Paradigm]:
    """Every paradigm behind the inputs, checkpoints sorted by step; names made unique."""
    if not inputs:
        raise UserError("no report inputs given", FIX)
    paradigms: list[Paradigm] = []
    with tqdm(desc="reading run folders", unit="checkpoint", leave=False) as progress:
        for path in inputs:
            paradigms += _expand(Path(path), progress)
    # two runs of one paradigm (e.g. seeds): tell them apart by their folder
    names = [p.name for p in paradigms]
    for p in paradigms:
        if names.count(p.name) > 1:
            p.name = f"{p.name}:{p.source.name}"
    names = [p.name for p in paradigms]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UserError(f"two report inputs give the paradigm {dup!r}", "pass each training output_dir once")
    return paradigms
