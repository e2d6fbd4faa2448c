"""`sustain report` on synthetic run folders laid out as training and the Slurm driver write them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scipy.stats import binomtest

from sustain.eval.errors import UserError
from sustain.eval.records import RecordStore, write_json_atomic
from sustain.eval.report.build import build_report
from sustain.eval.report.stats import mcnemar
from sustain.eval.summary import summarise

TASKS = ("gsm8k", "hotpotqa")
N_ITEMS = 30


def solved_rule(i: int) -> bool:
    return i % 5 != 0  # the same 24 of 30 items solved at baseline by every model (unless told otherwise)


def keep_rules():
    """Constrained (hard:k1) success per item, by how robust the model is."""
    return {
        "robust": lambda i: i % 10 != 1,
        "fragile": lambda i: i % 3 == 0,
        "middling": lambda i: i % 2 == 0,
    }


def write_eval(folder: Path, model: str, keep: str, unsolved_tasks=(), attention_gap: float | None = None) -> dict:
    """A finished eval run folder: run.json, records, summary.json from the real summariser."""
    keep_fn = keep_rules()[keep]
    base, constrained, control = [], [], []
    for task in TASKS:
        for i in range(N_ITEMS):
            gold = str(i + 10)
            solved = solved_rule(i) and task not in unsolved_tasks
            base.append({"task": task, "item_id": str(i), "condition": "base", "success": solved, "gold": gold,
                         "answer": gold if solved else "0", "output": f"so the answer is {gold if solved else 0}",
                         "finish_reason": "stop"})
            if not solved:
                continue
            control.append({"task": task, "item_id": str(i), "condition": "control", "success": i % 7 != 0})
            for k in (1, 2):
                ok = keep_fn(i) if k == 1 else keep_fn(i + 1)
                constrained.append({
                    "task": task, "item_id": str(i), "condition": f"hard:k{k}", "family": "hard", "k": k,
                    "constraints": [{"id": "length:words", "family": "hard", "category": "length",
                                     "text": "Answer in at most 40 words."}] * k,
                    "constraint_text": "Answer in at most 40 words.", "success": ok, "followed_all": ok or i % 2 == 0,
                    "gold": gold, "answer": gold if ok else None,
                    "output": f"As requested: {gold}" if ok else f"the total is {gold} but I stopped",
                    "finish_reason": "stop"})
    folder.mkdir(parents=True)
    write_json_atomic(folder / "run.json", {"identity": {"model": model, "seed": 0}})
    RecordStore(folder / "baseline.jsonl").append(base)
    RecordStore(folder / "constrained.jsonl").append(constrained)
    RecordStore(folder / "control.jsonl").append(control)
    summary = summarise(base, constrained, seed=0, control=control)
    summary["model"] = model
    if attention_gap is not None:
        write_json_atomic(folder / "attention_summary.json",
                          {"gap": {"value": attention_gap, "lo": attention_gap - 0.02, "hi": attention_gap + 0.02,
                                   "n": 40}})
    write_json_atomic(folder / "summary.json", summary)
    return summary


def make_root(root: Path) -> Path:
    """base + sft (3 checkpoints, the last still evaluating) + grpo (3 finished checkpoints)."""
    write_eval(root / "base/eval/checkpoint-0", "base", "middling", attention_gap=0.05)
    sft = root / "sft_run"
    sft.mkdir(parents=True)
    (sft / "run_info.json").write_text(json.dumps({"paradigm": "sft", "recipe": "recipes/sft.yaml", "base_model": "b"}))
    for step in (100, 200, 300):
        (sft / f"checkpoint-{step}").mkdir()  # TRL checkpoint folders
    write_eval(sft / "eval/checkpoint-100", "sft-100", "middling", attention_gap=0.08)
    write_eval(sft / "eval/checkpoint-200", "sft-200", "fragile", unsolved_tasks=("hotpotqa",), attention_gap=0.12)
    pending = sft / "eval/checkpoint-300"
    pending.mkdir(parents=True)
    (pending / "baseline.jsonl").write_text("")  # eval killed after starting
    for step, keep in ((100, "middling"), (200, "robust"), (300, "robust")):
        write_eval(root / f"grpo/eval/checkpoint-{step}", f"grpo-{step}", keep, attention_gap=0.03)
    (root / "grpo" / "wandb").mkdir()  # the training run's own W&B folder: never read
    (root / "grpo" / "wandb" / "debug.log").write_text("training logs")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "runs")


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[str, dict, Path]:
    """One report of the comparison root, shared by the tests that only read it: (report.md, report.json, out)."""
    tmp = tmp_path_factory.mktemp("built")
    md = build_report([make_root(tmp / "runs")], tmp / "report")
    return md.read_text(), _report(tmp / "report"), tmp / "report"


def test_comparison_root_gives_plots_table_and_paired_test(built):
    md, report, out = built

    assert sorted(report["final"]) == ["grpo", "sft"]
    assert report["cells"] == [f"{t}/hard" for t in TASKS]
    for task in TASKS:
        png = out / f"curves_{task}_hard.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.name})" in md  # embedded by relative path
    assert report["tasks"] == list(TASKS)
    # every paradigm's curve starts at the base model (step 0)
    assert [p["step"] for p in report["series"]["grpo"]["score/gsm8k/hard"]] == [0, 100, 200, 300]
    assert not any(m == "sustain" or m.startswith("sustain/") for m in report["series"]["grpo"])  # nothing pooled
    assert report["final"]["grpo"]["step"] == 300 and report["final"]["sft"]["step"] == 200

    # the final table has a row per paradigm, task and family with the SustainScore, its control and coverage
    grpo = report["final"]["grpo"]["cells"]["gsm8k/hard"]
    assert "| base model | 0 | gsm8k | hard |" in md and "| grpo | 300 | gsm8k | hard |" in md
    assert "| sft | 200 | hotpotqa | hard |" in md
    score, control = grpo["score"], grpo["control"]
    assert f"{score['value']:.3f} [{score['lo']:.3f}, {score['hi']:.3f}] n={score['n']}" in md
    assert f"{control['value']:.3f} [{control['lo']:.3f}, {control['hi']:.3f}] n={control['n']}" in md
    assert score["n"] == control["n"] == 24 and grpo["coverage"]["value"] == 1.0

    # paired test grpo@300 vs sft@200 on gsm8k, hard:k1 (sft@200 solved no hotpotqa: no test there)
    tests = [t for t in report["paired_tests"] if {t["a"], t["b"]} == {"grpo", "sft"}]
    assert [(t["task"], t["condition"]) for t in tests] == [("gsm8k", "hard:k1")]
    test = tests[0]
    pairs = [i for i in range(N_ITEMS) if solved_rule(i)]
    robust, fragile = keep_rules()["robust"], keep_rules()["fragile"]
    keep = {"grpo": robust, "sft": fragile}
    only_a = sum(keep[test["a"]](i) and not keep[test["b"]](i) for i in pairs)
    only_b = sum(keep[test["b"]](i) and not keep[test["a"]](i) for i in pairs)
    assert (test["n_pairs"], test["only_a"], test["only_b"]) == (len(pairs), only_a, only_b)
    expected_p = binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert test["p_value"] == pytest.approx(expected_p)
    assert f"{expected_p:.2g}" in md and "exact McNemar" in md
    # the generated findings name the paradigm that keeps the most SustainScore
    assert "gsm8k/hard (k=1): **grpo** keeps the most" in md
    assert (out / "attention_gap.png").exists() and (out / "failures.png").exists()


def test_pending_checkpoint_is_listed_never_plotted(built):
    md, report, _ = built
    assert [(p["paradigm"], p["step"]) for p in report["pending"]] == [("sft", 300)]
    assert "no summary.json" in report["pending"][0]["reason"]
    assert 300 not in [p["step"] for p in report["series"]["sft"]["score/gsm8k/hard"]]
    assert "- sft step 300: eval incomplete: no summary.json" in md


def test_undefined_score_is_a_gap_with_its_reason(built):
    md, report, _ = built
    points = {p["step"]: p for p in report["series"]["sft"]["score/hotpotqa/hard"]}
    assert points[200]["value"] is None and points[200]["reason"] == "no items solved at baseline"
    assert points[100]["value"] is not None
    assert "sft step 200 score/hotpotqa/hard: no items solved at baseline" in md
    # the final table shows the reason, not a number
    assert "| sft | 200 | hotpotqa | hard | 0.000" in md and "undefined (no items solved at baseline)" in md


def test_single_run_folder_and_one_training_dir(root: Path, tmp_path: Path):
    single = _report_of(build_report([root / "grpo/eval/checkpoint-200"], tmp_path / "one"))
    assert list(single["final"]) == ["grpo"] and single["final"]["grpo"]["step"] == 200  # named by its training run
    assert single["paired_tests"] == []
    loose = tmp_path / "my_eval"  # an eval run folder outside any training layout: named by its model
    shutil.copytree(root / "grpo/eval/checkpoint-200", loose)
    assert list(_report_of(build_report([loose], tmp_path / "loose"))["final"]) == ["grpo-200"]

    one_dir = _report_of(build_report([root / "sft_run"], tmp_path / "sft"))
    assert list(one_dir["final"]) == ["sft"]
    assert [p["step"] for p in one_dir["series"]["sft"]["accuracy"]] == [0, 100, 200]  # sibling base/ is step 0


def _report_of(md_path: Path) -> dict:
    return json.loads((md_path.parent / "report.json").read_text())


def test_not_a_run_folder_names_it_and_the_fix(tmp_path: Path):
    junk = tmp_path / "downloads"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(UserError) as err:
        build_report([junk], tmp_path / "out")
    assert str(junk) in str(err.value) and "fix:" in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        build_report([tmp_path / "missing"], tmp_path / "out")


def test_wandb_offline_logs_runs_and_report_ignores_wandb_folders(root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "report"
    build_report([root], out, wandb_mode="offline", project="test-project", group="g1")
    runs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 3  # grpo, sft, and the report run with plots and tables
    assert all(list(r.glob("run-*.wandb")) for r in runs)
    assert list((tmp_path / "wb" / "wandb").glob("offline-run-*/files/media/images/plots/*.png"))
    before = {f: (out / f).read_bytes() for f in ("report.json", "report.md")}

    for wandb_dir in [*root.rglob("wandb"), tmp_path / "wb"]:
        shutil.rmtree(wandb_dir)
    build_report([root], out)
    assert {f: (out / f).read_bytes() for f in ("report.json", "report.md")} == before


def test_mcnemar_pairs_only_items_in_both():
    a = {("t", "1"): True, ("t", "2"): True, ("t", "3"): False, ("t", "4"): True}
    b = {("t", "1"): False, ("t", "2"): False, ("t", "3"): False, ("t", "9"): True}
    r = mcnemar(a, b)
    assert (r["n_pairs"], r["only_a"], r["only_b"], r["neither"]) == (3, 2, 0, 1)
    assert r["p_value"] == pytest.approx(binomtest(2, 2, 0.5).pvalue)
    assert r["diff"] == pytest.approx(2 / 3)
    empty = mcnemar(a, {("t", "7"): True})
    assert empty["p_value"] is None and "no item" in empty["reason"]


def test_notes_section_is_added(root: Path, tmp_path: Path):
    md = build_report([root], tmp_path / "r", notes="Seeds 1-3 pending.").read_text()
    assert md.rstrip().endswith("## Notes\n\nSeeds 1-3 pending.")


def test_wandb_report_blocks_show_the_group_by_checkpoint_step(built):
    import wandb_workspaces.reports.v2 as wr

    from sustain.eval.report.wandb_log import report_blocks

    report = built[1]
    findings, grid = report_blocks(report, "proj", "ent", "g1", wr)
    assert "grpo" in findings.text
    assert grid.runsets[0].filters == "Metric('Group') == 'g1'"
    plotted = {p.y[0]: p.x for p in grid.panels if isinstance(p, wr.LinePlot)}
    assert {"sustain/score/gsm8k/hard", "sustain/score/hotpotqa/hard", "sustain/attention_gap"} <= set(plotted)
    assert not any(y.startswith(("sustain/score/task", "sustain/score/k")) or y == "sustain/score" for y in plotted)
    assert set(plotted.values()) == {"sustain/checkpoint_step"}


def test_wandb_rows_skip_undefined_values_and_carry_intervals(built):
    from sustain.eval.report.wandb_log import _rows

    rows = {r["sustain/checkpoint_step"]: r for r in _rows(built[1]["series"]["sft"])}
    assert sorted(rows) == [0, 100, 200]  # the pending step 300 is not logged
    assert "sustain/score/hotpotqa/hard" not in rows[200]  # undefined: a gap, not a 0
    assert rows[100]["sustain/score/hotpotqa/hard"] is not None
    score, control = "sustain/score/gsm8k/hard", "sustain/control/gsm8k/hard"
    assert rows[200][f"{score}_lo"] <= rows[200][score] <= rows[200][f"{score}_hi"]
    assert rows[200][f"{control}_lo"] <= rows[200][control] <= rows[200][f"{control}_hi"]
    for row in rows.values():  # every score carries its interval and n
        scores = [k for k in row if k != "sustain/checkpoint_step" and not k.endswith(("_lo", "_hi", "_n", "_count"))]
        assert all(f"{k}_n" in row for k in scores)
        assert all(f"{k}_lo" in row and f"{k}_hi" in row for k in scores if row[f"{k}_n"] > 0)
