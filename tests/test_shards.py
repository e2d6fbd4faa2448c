"""One eval split across ranks: every shard runs the whole pipeline on its share of the items and
the merged records equal a one-rank eval's, in the same order, interrupted or not."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError
from sustain.eval.generators.hf import HFGenerator
from sustain.eval.pipeline import run_eval
from sustain.eval.shards import merge_shards, run_shard, shard_folder, shard_items


def config(model: Path, out: Path) -> EvalConfig:
    return EvalConfig(model=str(model), tasks=["arith"], limit=13, out=str(out), k_max=2, max_new_tokens=40, batch_size=4)


def jsonl_files(out: Path) -> dict[str, list[dict]]:
    """Every record file, records in file order; `batch` (which batch a record was generated in, a
    fact of the layout that differs between shards by construction) left out."""
    return {p.name: [without_layout(json.loads(line)) for line in p.read_text().splitlines()]
            for p in sorted(out.glob("*.jsonl"))}


def without_layout(rec: dict) -> dict:
    rec.pop("batch", None)
    return rec


@pytest.fixture(scope="module")
def generator(tiny_model):
    gen = HFGenerator(str(tiny_model))
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def one_rank(tiny_model, generator, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "eval"
    return out, run_eval(config(tiny_model, out), generator)


def test_shares_cover_every_item_once():
    items = list(range(13))
    shares = [shard_items(items, rank, 3) for rank in range(3)]
    assert sorted(sum(shares, [])) == items and [len(s) for s in shares] == [5, 4, 4]


def test_merged_shards_equal_a_one_rank_eval(tiny_model, generator, one_rank, tmp_path, world_size=3):
    one_out, one_summary = one_rank
    cfg = config(tiny_model, tmp_path / "eval")
    for rank in range(world_size):
        run_shard(cfg, rank, world_size, generator)
    summary = merge_shards(cfg, world_size)
    merged = jsonl_files(tmp_path / "eval")
    assert merged == jsonl_files(one_out) and "constrained.jsonl" in merged
    assert summary["accuracy"] == one_summary["accuracy"] and summary["sustain"] == one_summary["sustain"]


def test_a_killed_shard_resumes_and_merging_early_is_refused(tiny_model, generator, one_rank, tmp_path):
    cfg = config(tiny_model, tmp_path / "eval")
    run_shard(cfg, 0, 2, generator)
    with pytest.raises(UserError, match="not finished"):
        merge_shards(cfg, 2)
    # rank 1 killed after its baseline: cut its later stages, as a kill between stages leaves them
    run_shard(cfg, 1, 2, generator)
    for name in ("constrained.jsonl", "summary.json"):
        (shard_folder(cfg.out, 1) / name).unlink()
    lines = (shard_folder(cfg.out, 1) / "baseline.jsonl").read_bytes().splitlines(keepends=True)
    (shard_folder(cfg.out, 1) / "baseline.jsonl").write_bytes(b"".join(lines[:-2]) + lines[-2][:9])  # a torn write
    run_shard(cfg, 1, 2, generator)
    merge_shards(cfg, 2)
    assert jsonl_files(tmp_path / "eval") == jsonl_files(one_rank[0])


def test_more_ranks_than_items_leaves_empty_shares(tiny_model, generator, tmp_path):
    cfg = dataclasses.replace(config(tiny_model, tmp_path / "eval"), limit=2)
    for rank in range(3):
        run_shard(cfg, rank, 3, generator)
    summary = merge_shards(cfg, 3)
    assert summary["accuracy"]["n"] == 2
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["accuracy"]["n"] == 2
