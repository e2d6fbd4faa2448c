"""The SustainScore pipeline end to end on the tiny arith base model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError
from sustain.eval.pipeline import run_eval
from sustain.eval.records import RecordStore
from fakes import NoCalls
from scripted_llm import ScriptedLLM

STAGE_FILES = ("baseline.jsonl", "constraints.jsonl", "constrained.jsonl", "control.jsonl")


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
    k1 = {r["item_id"]: r for r in runs if r["k"] == 1}
    cell = summary["sustain"]["headline"]["arith"]["hard"]  # the headline: k=1, one task, one family
    assert cell["n"] == len(k1) and cell["value"] == sum(r["success"] for r in k1.values()) / len(k1)
    assert cell["lo"] <= cell["value"] <= cell["hi"]
    coverage = cell["coverage"]
    assert coverage["solved"] == len(solved) == coverage["with_constraint"] + sum(coverage["excluded"].values())
    control = {r["item_id"]: r for r in recs["control.jsonl"]}
    assert control.keys() == solved and all("constraints" not in r for r in control.values())
    assert all(r["messages"] == base_r["messages"] for base_r in base if base_r["item_id"] in control
               for r in [control[base_r["item_id"]]])  # the same prompt, re-run beside the constrained ones
    assert cell["control"]["n"] == len(k1) and cell["vs_control"]["n_pairs"] == len(k1)
    for r in runs:  # nested sets: the k=2 set holds the k=1 constraint
        if r["k"] == 2:
            assert r["constraints"][:1] == k1[r["item_id"]]["constraints"]
    scale = summary["sustain"]["scale"]["arith"]["hard"]
    assert set(scale["by_k"]) == {"k1", "k2"}
    assert scale["by_k"]["k1"]["n"] == scale["by_k"]["k2"]["n"] == scale["coverage"]["with_constraint"]
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


def test_dtype_loads_the_model_in_that_dtype_and_a_folder_of_another_dtype_is_refused(tiny_model, tmp_path):
    import torch

    from sustain.eval.pipeline import Pipeline

    pipe = Pipeline(config(tiny_model, tmp_path / "eval", dtype="bfloat16"))  # claims the folder, generates nothing
    try:
        assert next(pipe.generator.model.parameters()).dtype == torch.bfloat16
    finally:
        pipe.close()
    # a folder with records keeps its settings (one with none is simply re-claimed)
    RecordStore(tmp_path / "eval" / "baseline.jsonl").append(
        [{"task": "arith", "item_id": "0", "condition": "base", "output": "1", "success": False}])
    with pytest.raises(UserError, match="was made with dtype='bfloat16'"):
        Pipeline(config(tiny_model, tmp_path / "eval", dtype="float32"), generator=NoCalls())


def test_larger_k_max_computes_only_the_new_k(finished_run, tiny_model, tmp_path):
    out, _ = finished_run
    folder = tmp_path / "eval"
    shutil.copytree(out, folder)
    before = {n: (folder / n).read_bytes() for n in STAGE_FILES}
    summary = run_eval(config(tiny_model, folder, k_max=3))
    for name in ("baseline.jsonl", "constraints.jsonl", "control.jsonl"):
        assert (folder / name).read_bytes() == before[name]
    after = (folder / "constrained.jsonl").read_bytes()
    assert after.startswith(before["constrained.jsonl"])  # appended only
    added = [json.loads(line) for line in after[len(before["constrained.jsonl"]):].splitlines()]
    assert added and {r["k"] for r in added} == {3}
    assert set(summary["sustain"]["scale"]["arith"]["hard"]["by_k"]) == {"k1", "k2", "k3"}


def gsm8k_file(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": f"#### {i}"}) + "\n" for i, q in enumerate(questions)))
    return path


def test_changed_data_file_in_the_same_folder_is_refused(tiny_model, tmp_path):
    data = gsm8k_file(tmp_path / "a.jsonl", ["What is 1 + 1?", "What is 2 + 2?"])
    opts = dict(tasks=["gsm8k"], data={"gsm8k": str(data)}, limit=None, k_max=1, max_new_tokens=8)
    run_eval(config(tiny_model, tmp_path / "eval", **opts))
    meta = json.loads((tmp_path / "eval" / "run.json").read_text())
    fingerprint = meta["identity"]["data_fingerprint"]["gsm8k"]
    assert fingerprint["items"] == 2 and len(fingerprint["sha256"]) == 16
    gsm8k_file(data, ["What is 1 + 1?", "What is 3 + 3?", "What is 4 + 4?"])  # row 1 now asks another question
    with pytest.raises(UserError, match="holds gsm8k item 1 made from other data"):
        run_eval(config(tiny_model, tmp_path / "eval", **opts), generator=NoCalls())
    gsm8k_file(data, ["What is 1 + 1?", "What is 2 + 2?", "What is 4 + 4?"])  # one more row: accepted
    run_eval(config(tiny_model, tmp_path / "eval", **opts))
    assert len(RecordStore(tmp_path / "eval" / "baseline.jsonl")) == 3


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
    out = tmp_path / "soft"
    run_eval(config(tiny_model, out, limit=12, k_max=1))  # hard only first; soft is added below
    hard_before = {n: (out / n).read_bytes() for n in STAGE_FILES}
    # the planted slow reply never comes within the test; the others have the whole timeout on a loaded machine
    llm = ScriptedLLM(slow_s=120.0)
    try:
        summary = run_eval(config(tiny_model, out, limit=12, k_max=1, families=["hard", "soft"],
                                  soft_model="scripted-judge", soft_base_url=llm.url, request_timeout_s=5.0,
                                  request_retries=0))
    finally:
        llm.close()
    for name in STAGE_FILES:  # adding a family appends its records and changes none of the others
        assert (out / name).read_bytes().startswith(hard_before[name])
    extracted = list(RecordStore(out / "constraints.jsonl"))
    assert {r["condition"] for r in extracted} == {"extract:hard", "extract:soft"}
    candidates = [c for r in extracted for c in r["candidates"]]
    errors = [c.get("error") for c in candidates if c.get("checked_by") == "llm" and c.get("error")]
    assert "unparseable" in errors  # the malformed reply is recorded, not fatal
    assert any("timeout" in e for e in errors)  # so is the timeout
    runs = list(RecordStore(out / "constrained.jsonl"))
    soft_runs = [r for r in runs if r["family"] == "soft"]
    assert soft_runs and all(r["follow"] == [True] for r in soft_runs)
    soft = summary["sustain"]["headline"]["arith"]["soft"]
    assert soft["n"] == len(soft_runs)
    assert any(reason.startswith("extraction failed") for reason in soft["coverage"]["excluded"])


def test_a_batch_cut_between_its_two_stores_is_redone_whole(tmp_path):
    """Control and constrained runs share batches but not files: a kill between the two writes
    leaves half a batch, whose written records are queued again so the batch is regenerated whole."""
    from sustain.eval.pipeline import partial_batches

    control, constrained = RecordStore(tmp_path / "control.jsonl"), RecordStore(tmp_path / "constrained.jsonl")
    whole, cut = {"id": "arith|0|control", "size": 2}, {"id": "arith|1|control", "size": 2}
    control.append([{"task": "arith", "item_id": "0", "condition": "control", "batch": whole},
                    {"task": "arith", "item_id": "1", "condition": "control", "batch": cut}])
    constrained.append([{"task": "arith", "item_id": "0", "condition": "hard:k1", "batch": whole},
                        {"task": "arith", "item_id": "9", "condition": "hard:k3"}])  # a single-store batch
    assert partial_batches([constrained, control]) == {("arith", "1", "control")}


def test_soft_judge_is_fixed_once_soft_records_exist(tmp_path):
    from sustain.eval.pipeline import Pipeline

    out = tmp_path / "run"
    Pipeline(EvalConfig(model="m", tasks=["arith"], limit=2, out=str(out)), generator=NoCalls())  # hard only
    assert json.loads((out / "run.json").read_text())["identity"]["soft_model"] is None
    RecordStore(out / "baseline.jsonl").append(  # a folder with records keeps its settings
        [{"task": "arith", "item_id": "0", "condition": "base", "output": "1", "success": False}])
    soft = dict(model="m", tasks=["arith"], limit=2, out=str(out), families=["hard", "soft"],
                soft_base_url="http://127.0.0.1:9/v1")
    Pipeline(EvalConfig(**soft, soft_model="judge-a"), generator=NoCalls())  # soft added later: allowed
    Pipeline(EvalConfig(model="m", tasks=["arith"], limit=2, out=str(out)), generator=NoCalls())  # hard only again
    assert json.loads((out / "run.json").read_text())["identity"]["soft_model"] == "judge-a"
    with pytest.raises(UserError, match="soft_model='judge-a'"):
        Pipeline(EvalConfig(**soft, soft_model="judge-b"), generator=NoCalls())
