"""One eval split across ranks: each rank runs every stage on its share of the items, in a run
folder of its own (<out>/shards/rank-R/), and one process merges the shards' records into <out> in
the order a one-rank eval writes them, then derives summary.json from them.

Every stage works item by item (an item's constraints come from its own baseline output), so a
share of the items is a complete eval of those items; nothing crosses shards but the summary.
"""
from __future__ import annotations

import json
from pathlib import Path

from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError
from sustain.eval.records import RecordStore, write_text_atomic

SHARDS = "shards"


def shard_folder(out: str | Path, rank: int) -> Path:
    return Path(out) / SHARDS / f"rank-{rank}"


def shard_items(items: list, rank: int, world_size: int) -> list:
    """Rank R's share: every world_size-th item from R, so shards are balanced across a task's items."""
    return items[rank::world_size]


def run_shard(cfg: EvalConfig, rank: int, world_size: int, generator=None) -> dict:
    """This rank's share of the eval of cfg.model, in its own run folder (resumable like any run)."""
    import dataclasses

    from sustain.eval.pipeline import Pipeline

    shard_cfg = dataclasses.replace(cfg, out=str(shard_folder(cfg.out, rank)))
    return Pipeline(shard_cfg, generator, shard=(rank, world_size)).run()


def merge_shards(cfg: EvalConfig, world_size: int) -> dict:
    """Merge finished shards into cfg.out (records in one-rank order) and write the summary."""
    from sustain.eval.pipeline import Pipeline
    from sustain.eval.summary import write_summary

    folders = [shard_folder(cfg.out, rank) for rank in range(world_size)]
    missing = [str(f) for f in folders if not (f / "summary.json").exists()]
    if missing:
        raise UserError(f"shard(s) not finished: {', '.join(missing)}", "rerun the eval on every rank first")
    pipeline = Pipeline(cfg)  # claims cfg.out and loads the items in their one-rank order; generates nothing
    try:
        position = {(task, str(item_id)): (t, i) for t, (task, items) in enumerate(pipeline.items.items())
                    for i, item_id in enumerate(items)}
    finally:
        pipeline.close()
    names = sorted({p.name for f in folders for p in f.glob("*.jsonl")})
    for name in names:
        records = [rec for f in folders if (f / name).exists() for rec in RecordStore(f / name)]
        # sorted() is stable: an item's records keep the order its shard wrote them in
        records = sorted(records, key=lambda r: position.get((r.get("task"), str(r.get("item_id"))), (len(position), 0)))
        text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
        write_text_atomic(Path(cfg.out) / name, text)
    return write_summary(cfg.out)
