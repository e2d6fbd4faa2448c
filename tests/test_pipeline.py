"""The SustainScore pipeline end to end on the tiny arith base model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError
from sustain.eval.pipeline import run_eval
from sustain.eval.records import RecordStore
from fakes import NoCalls
from scripted_llm import ScriptedLLM

STAGE_FILES = ("baseline.jsonl", "constraints.jsonl", "constrained.jsonl")


def config(model: Path, out: Path, **kw) -> EvalConfig:
    opts = dict(model=str(model), tasks=["arith"], limit=32, out=str(out), k_max=2, max_new_tokens=48,
                batch_size=16)
    opts.update(kw)
    return EvalConfig(**opts)


def records(out: Path) -> dict[str, list[dict]]:
    return {name: sorted(RecordStore(out / name), key=lambda r: (r["task"], r["item_id"], r["condition"]))
            for name in STAGE_FILES}


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "eval"
    summary = run_eval(config(tiny_model, out))
    return out, summary


def test_end_to_end_hard_constraints(finished_run):
    out, summary = finished_run
    recs = records(out)
    base = recs["baseline.jsonl"]
    assert len(base) == 32 and summary["accuracy"]["n"] == 32
    assert summary["accuracy"]["value"] >= 0.8
    solved = {r["item_id"] for r in base if r["success"]}
    extracted = recs["constraints.jsonl"]
    assert {r["item_id"] for r in extracted} == solved  # constraints only from solved outputs
    for rec in extracted:
        assert any(c["self_evident"] for c in rec["candidates"])
    runs = recs["constrained.jsonl"]
    assert runs and {r["item_id"] for r in runs} <= solved
    for r in runs:
        assert len(r["constraints"]) == r["k"] == len(r["follow"])
        assert r["constraint_text"] in r["messages"][-1]["content"]
    overall = summary["sustain"]["overall"]
    assert overall["n"] == len(runs)
    assert overall["value"] == sum(r["success"] for r in runs) / len(runs)
    assert overall["lo"] <= overall["value"] <= overall["hi"]
    assert set(summary["sustain"]["by_k"]) == {"k1", "k2"}
    assert sum(summary["failures"].values()) == sum(not r["success"] for r in runs)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_rerun_generates_nothing_and_changes_nothing(finished_run, tiny_model):
    out, summary = finished_run
    before = {n: (out / n).read_bytes() for n in STAGE_FILES}
    again = run_eval(config(tiny_model, out), generator=NoCalls())
    assert again == summary
    assert {n: (out / n).read_bytes() for n in STAGE_FILES} == before


def test_same_seed_gives_identical_records(finished_run, tiny_model, tmp_path):
    out, _ = finished_run
    run_eval(config(tiny_model, tmp_path / "again"))
    assert records(tmp_path / "again") == records(out)


def test_folder_of_another_model_is_refused(finished_run, tmp_path):
    out, _ = finished_run
    with pytest.raises(UserError, match="was made with model="):
        run_eval(config(tmp_path / "other-model", out), generator=NoCalls())


def test_unknown_category_and_empty_task_list_are_user_errors(tiny_model, tmp_path):
    with pytest.raises(UserError, match="category"):
        run_eval(config(tiny_model, tmp_path / "a", categories=["colour"]))
    with pytest.raises(UserError, match="no tasks"):
        run_eval(config(tiny_model, tmp_path / "b", tasks=[]))


def test_model_folder_without_weights_is_a_user_error(tmp_path):
    ckpt = tmp_path / "checkpoint-10"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    with pytest.raises(UserError, match="no weights"):
        run_eval(config(ckpt, tmp_path / "out"))


def test_soft_constraints_through_a_scripted_endpoint(tiny_model, tmp_path):
    # the planted slow reply never comes within the test; the others have the whole timeout on a loaded machine
    llm = ScriptedLLM(slow_s=120.0)
    try:
        summary = run_eval(config(tiny_model, tmp_path / "soft", limit=12, k_max=1, families=["hard", "soft"],
                                  soft_model="scripted-judge", soft_base_url=llm.url, request_timeout_s=5.0,
                                  request_retries=0))
    finally:
        llm.close()
    candidates = [c for r in RecordStore(tmp_path / "soft" / "constraints.jsonl") for c in r["candidates"]]
    errors = [c.get("error") for c in candidates if c.get("checked_by") == "llm" and c.get("error")]
    assert "unparseable" in errors  # the malformed reply is recorded, not fatal
    assert any("timeout" in e for e in errors)  # so is the timeout
    runs = list(RecordStore(tmp_path / "soft" / "constrained.jsonl"))
    soft_runs = [r for r in runs if r["family"] == "soft"]
    assert soft_runs and all(r["follow"] == [True] for r in soft_runs)
    assert set(summary["sustain"]["by_family"]) == {"hard", "soft"}
