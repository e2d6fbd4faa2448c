"""`sustain report` refuses to overlay curves whose evals were run with different settings, unless told to."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sustain.eval.errors import UserError
from sustain.eval.report.build import build_report
from sustain.eval.report.comparable import differences
from sustain.eval.report.collect import collect
from test_report import make_root

SETTINGS = {"tasks": ["gsm8k", "hotpotqa"], "split": "test", "limit": 30, "data": {}, "families": ["hard"],
            "categories": None, "k_max": 2, "max_new_tokens": 4096, "temperature": 0.0, "position": "append",
            "sandbox": "bwrap"}


def set_settings(root: Path, **changed_by_folder) -> None:
    """Every finished eval gets SETTINGS in run.json; folders named in changed_by_folder get overrides."""
    for run_json in root.rglob("run.json"):
        meta = json.loads(run_json.read_text())
        meta["config"] = {**SETTINGS, **changed_by_folder.get(run_json.parent.parent.parent.name, {})}
        run_json.write_text(json.dumps(meta))


def test_same_settings_build_without_differences(tmp_path):
    root = make_root(tmp_path / "runs")
    set_settings(root)
    build_report([root], tmp_path / "report")
    assert json.loads((tmp_path / "report" / "report.json").read_text())["settings_differences"] == []


def test_a_different_token_budget_is_refused_then_printed_when_allowed(tmp_path):
    root = make_root(tmp_path / "runs")
    set_settings(root, grpo={"max_new_tokens": 1024})  # e.g. GRPO checkpoints evaluated with a smaller budget
    with pytest.raises(UserError) as refused:
        build_report([root], tmp_path / "report")
    assert "max_new_tokens: 4096" in refused.value.problem and "1024 (grpo@100, grpo@200, grpo@300)" in refused.value.problem
    assert "--allow-mixed-settings" in refused.value.fix
    assert not (tmp_path / "report" / "report.json").exists()
    md = build_report([root], tmp_path / "report", allow_mixed_settings=True).read_text()
    assert "WARNING: these curves were evaluated with different settings" in md and "max_new_tokens" in md
    diffs = json.loads((tmp_path / "report" / "report.json").read_text())["settings_differences"]
    assert [d["setting"] for d in diffs] == ["max_new_tokens"]


def test_the_shared_base_eval_counts_and_fingerprints_replace_paths(tmp_path):
    root = make_root(tmp_path / "runs")
    set_settings(root, base={"k_max": 1})  # base/eval/checkpoint-0: made with the first recipe's settings
    assert [d["setting"] for d in differences(collect([root]))] == ["k_max"]
    set_settings(root, grpo={"data": {"gsm8k": "/elsewhere/gsm8k.jsonl"}})
    assert [d["setting"] for d in differences(collect([root]))] == ["data"]
    for run_json in root.rglob("run.json"):  # the same content under another path: one fingerprint
        meta = json.loads(run_json.read_text())
        meta["identity"]["data_fingerprint"] = "abc123"
        run_json.write_text(json.dumps(meta))
    assert differences(collect([root])) == []
