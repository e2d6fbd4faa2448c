"""What the attention and ablation stages need from a finished run folder: its settings, a generator that
holds the model's weights in this process, the constrained records, and each prompt's constraint tokens."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from sustain.eval.attention.span import TokenSpan, constraint_char_span, token_span
from sustain.eval.config import EvalConfig, from_dict
from sustain.eval.errors import UserError
from sustain.eval.run_files import read_run_json, records
from sustain.eval.generators import backend_class
from sustain.eval.tasks import Task, open_task


def run_config(run_folder: str | Path) -> EvalConfig:
    """The EvalConfig saved in run.json (keys a newer or older suite does not know are ignored)."""
    meta = Path(run_folder) / "run.json"
    if not meta.is_file():
        raise UserError(f"{meta} not found", "pass the folder of a finished `sustain eval` run")
    saved = read_run_json(run_folder).get("config")
    if not isinstance(saved, dict):
        raise UserError(f"{meta} is not a run.json written by `sustain eval` (no config mapping)", "pass an eval run folder")
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    return from_dict(EvalConfig, {k: v for k, v in saved.items() if k in known}, str(meta))


def refuse_remote(cfg: EvalConfig, run_folder: str | Path) -> None:
    if not backend_class(cfg.backend).local_weights:
        raise UserError(
            f"run {run_folder} used the {cfg.backend!r} backend: attention needs the model's weights in this process",
            "evaluate a local checkpoint with a backend that loads its weights (e.g. the default) to analyse attention",
        )


def local_generator(cfg: EvalConfig, generator=None):
    """The HF generator to analyse: the one given, one a zero-argument factory returns (so nothing is
    loaded when a stage has no work), one loaded from a model path, or run.json's model."""
    if callable(generator) and not hasattr(generator, "model"):
        generator = generator()
    if generator is None or isinstance(generator, (str, Path)):
        from sustain.eval.generators.hf import HFGenerator

        return HFGenerator(str(generator or cfg.model))
    if not all(hasattr(generator, a) for a in ("model", "tokenizer", "prompt_text")):
        raise UserError(
            f"{type(generator).__name__} does not expose the model's weights (attention needs an HF generator)",
            "run `sustain attention RUN_FOLDER` after the eval: it loads the weights with transformers",
        )
    return generator


def constrained_records(run_folder: str | Path) -> list[dict]:
    """Sorted by key; none when no item was solved at baseline (the pipeline then writes no file)."""
    return sorted(records(run_folder, "constrained.jsonl"), key=lambda r: (r["task"], str(r["item_id"]), r["condition"]))


def open_tasks(cfg: EvalConfig, task_names: set[str]) -> dict[str, Task]:
    """The run's tasks built as the pipeline built them (data path, sandbox settings); close them after use."""
    return {name: open_task(name, cfg) for name in sorted(task_names)}


def _message_starts(prompt: str, messages: list[dict]) -> list[int] | None:
    """Where each message's content starts in the rendered prompt (templates render them in order), or None
    when a template rewrote a message."""
    starts, cursor = [], 0
    for m in messages:
        at = prompt.find(m["content"], cursor)
        if at < 0:
            return None
        starts.append(at)
        cursor = at + len(m["content"])
    return starts


def _constraint_chars(prompt: str, messages: list[dict], constraint: str, position: str) -> tuple[int, int]:
    """Characters of the constraint in the rendered prompt. The message that carries it is found first, so a
    task text that happens to contain the same words is never taken for it; a template that rewrites the
    messages falls back to the constraint's last occurrence."""
    role = "system" if position == "system" else "user"
    carriers = [i for i, m in enumerate(messages) if m["role"] == role and constraint in m["content"]]
    starts = _message_starts(prompt, messages)
    if not carriers or starts is None:
        return constraint_char_span(prompt, constraint)
    content = messages[carriers[-1]]["content"]
    within = {"append": len(content) - len(constraint), "prepend": 0}.get(position)
    if within is None or content[within : within + len(constraint)] != constraint:
        within = content.rfind(constraint)
    at = starts[carriers[-1]] + within
    return at, at + len(constraint)


def prompt_span(generator, record: dict) -> TokenSpan:
    """The prompt token ids exactly as the generator fed them to the model, and the constraint's tokens."""
    tokenizer = generator.tokenizer
    prompt = generator.prompt_text(record["messages"])
    chars = _constraint_chars(prompt, record["messages"], record["constraint_text"], record.get("position", "append"))
    span = token_span(tokenizer, prompt, chars)
    if not getattr(generator, "uses_plain_template", False):
        return span
    # The plain template's prompts are tokenised with special tokens (e.g. BOS): shift the span past them.
    full = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    n = len(span.input_ids)
    shift = next((i for i in range(len(full) - n + 1) if full[i : i + n] == span.input_ids), None)
    if shift is None:
        return span
    return TokenSpan(list(full), span.start + shift, span.end + shift)
