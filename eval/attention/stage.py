"""The attention stage: for every constrained generation of a run folder, the attention mass its tokens put
on the constraint, one record per (task, item, condition) in attention.jsonl, then attention_summary.json.

Resumable like every stage: records already in attention.jsonl are skipped, so a rerun loads no model.
The output is re-tokenised from its text (the generated ids are not stored): per_step has one value per
token of that re-tokenisation, which for most tokenizers equals the generated tokens minus a final EOS.
"""
from __future__ import annotations

from pathlib import Path

import torch

from sustain.eval.attention.aggregate import summarise_attention
from sustain.eval.attention.reduce import span_attention_ids
from sustain.eval.attention.strata import HEADLINE_METRIC, composition_safe_gaps
from sustain.eval.attention.run_folder import constrained_records, local_generator, prompt_span, refuse_remote, run_config
from sustain.eval.errors import UserError
from sustain.eval.records import RecordStore, record_key, write_json_atomic

RECORDS = "attention.jsonl"
SUMMARY = "attention_summary.json"
PLOTS = "attention"
DECIMALS = 6  # plenty for masses in [0, 1]; keeps attention.jsonl small


def _rounded(values) -> list:
    return [_rounded(v) if isinstance(v, list) else round(float(v), DECIMALS) for v in values]


def _record(constrained: dict, mass: dict, layers: list[int] | None) -> dict:
    """One attention record; per_step and its normalisations average the chosen layers (all when None)."""
    per_layer = torch.tensor(mass["per_layer"], dtype=torch.float64)  # (layers, steps)
    chosen = per_layer if layers is None else per_layer[layers]
    per_step = chosen.mean(0) if chosen.shape[1] else torch.zeros(0, dtype=torch.float64)
    context = torch.tensor(mass["context_tokens"], dtype=torch.float64)
    span = mass["span_tokens"]
    return {
        **{k: constrained[k] for k in ("task", "item_id", "condition", "success")},
        "family": constrained.get("family"),
        "k": constrained.get("k"),
        "layers": layers,
        "n_tokens": constrained.get("n_tokens"),
        "per_step": _rounded(per_step.tolist()),
        "per_layer": _rounded(per_layer.tolist()),
        "per_token_norm": _rounded((per_step / span).tolist()),
        "share_norm": _rounded((per_step * context / span).tolist()),  # 1.0 = the span's fair share
        "span_tokens": span,
        "prompt_tokens": mass["prompt_tokens"],
    }


def _check_layers(store: RecordStore, layers: list[int] | None, path: Path) -> None:
    made_with = {tuple(r["layers"]) if r.get("layers") is not None else None for r in store}
    wanted = tuple(layers) if layers is not None else None
    if made_with and made_with != {wanted}:
        theirs = ", ".join("all" if m is None else str(list(m)) for m in made_with)
        raise UserError(
            f"{path} was computed over layers {theirs}, not {'all' if wanted is None else list(wanted)}",
            "pass the same --layers, or move attention.jsonl away to recompute",
        )


def _check_layer_range(model, layers: list[int] | None) -> None:
    n = model.config.num_hidden_layers
    if layers is not None and not layers:
        raise UserError("the list of layers is empty", "pass layer numbers (e.g. --layers 0,1) or leave it out for all")
    bad = [layer for layer in layers or [] if not 0 <= layer < n]
    if bad:
        raise UserError(f"layers {bad} do not exist in a model of {n} layers", f"pick layers from 0 to {n - 1}")


def attention_summary(records: list[dict], run_folder: Path, layers: list[int] | None) -> dict:
    """summarise_attention over failed vs solved generations (curves, plots), plus the headline "gap"
    {value, lo, hi, n} that reports plot over training steps: the failed-minus-solved share of visible
    context, within strata of task x family x k, weighted (see strata.py). The pooled raw-mass gap is kept
    under "pooled_raw" for reference only: composition alone can produce it."""
    summary = summarise_attention(records, plot_dir=run_folder / PLOTS)
    summary["plots"] = [str(Path(p).relative_to(run_folder)) for p in summary.get("plots", [])]
    overall = summary["groups"]["all"]
    gap = overall["gap"]
    summary["pooled_raw"] = {
        "value": gap["value"], "lo": gap["low"], "hi": gap["high"],
        "n_failed": overall["n"]["failed"], "n_solved": overall["n"]["solved"],
        "mann_whitney": overall["mann_whitney"], "reason": gap["reason"],
        "note": "raw mass pooled over tasks, families and k; not a headline (span and context lengths differ by stratum)",
    }
    safe = composition_safe_gaps(records)
    summary.update(safe)
    headline = safe["stratified"][HEADLINE_METRIC]
    summary["gap"] = {k: headline[k] for k in ("value", "lo", "hi", "n", "n_failed", "n_solved", "n_strata")}
    summary["gap"].update(metric=HEADLINE_METRIC, method="stratified", weights=headline["weights"])
    if headline.get("reason"):
        summary["gap"]["reason"] = headline["reason"]
    summary["layers"] = layers
    return summary


def run_attention_stage(
    run_folder: str | Path, generator=None, layers: list[int] | None = None, batch_size: int = 8
) -> dict:
    """Attention records for every constrained record of `run_folder` (an hf-backend eval), then the summary.

    generator: an HFGenerator (e.g. the pipeline's), a zero-argument function returning one, a model
    path, or None for run.json's model; it is only obtained when records are missing. layers: which layers per_step averages (all when None).
    Returns the summary written to attention_summary.json.
    """
    out = Path(run_folder)
    cfg = run_config(out)
    refuse_remote(cfg, out)
    layers = sorted(set(layers)) if layers is not None else None
    store = RecordStore(out / RECORDS)
    _check_layers(store, layers, store.path)
    constrained = constrained_records(out)
    todo = [r for r in constrained if record_key(r) not in store]
    if todo:
        generator = local_generator(cfg, generator)
        _check_layer_range(generator.model, layers)
        pad_id = generator.tokenizer.pad_token_id or 0
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            spans = [prompt_span(generator, r) for r in chunk]
            outputs = [generator.tokenizer(r["output"], add_special_tokens=False)["input_ids"] for r in chunk]
            masses = span_attention_ids(generator.model, spans, outputs, batch_size, pad_id)
            store.append(_record(r, m, layers) for r, m in zip(chunk, masses))
    keys = {record_key(r) for r in constrained}
    summary = attention_summary([r for r in store if record_key(r) in keys], out, layers)
    write_json_atomic(out / SUMMARY, summary)
    return summary
