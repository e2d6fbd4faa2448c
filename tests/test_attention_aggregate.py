"""Failed-vs-solved summary: finds a planted gap where it is, reports none where there is none, never crashes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sustain.eval.attention import summarise_attention
from sustain.eval.errors import UserError


def records(n_failed: int, n_solved: int, late_gap: float, seed: int = 0, task: str = "gsm8k") -> list[dict]:
    """Failed generations attend `late_gap` more to the constraint, only in their second half, only in layer 1."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_failed + n_solved):
        failed = i < n_failed
        steps = int(rng.integers(20, 60))
        base = 0.1 + 0.01 * rng.standard_normal(steps)
        layer0 = base.copy()
        layer1 = base + (late_gap if failed else 0.0) * (np.arange(steps) >= steps / 2)
        per_layer = [layer0.tolist(), layer1.tolist()]
        out.append({
            "task": task, "item_id": f"{task}-{i}", "condition": "constrained", "success": not failed,
            "per_step": ((layer0 + layer1) / 2).tolist(), "per_layer": per_layer,
        })
    return out


def test_planted_late_gap_is_found_where_it_was_planted(tmp_path):
    summary = summarise_attention(records(15, 25, late_gap=0.2), plot_dir=tmp_path)
    group = summary["groups"]["all"]
    assert group["n"] == {"failed": 15, "solved": 25}
    assert group["gap"]["low"] > 0 and group["mann_whitney"]["p_value"] < 0.001
    bins = group["relative_gap"]
    assert all(b["low"] > 0.05 for b in bins[6:]) and all(b["low"] < 0 < b["high"] for b in bins[:4])
    layers = group["per_layer"]
    assert layers[0]["gap"]["low"] < 0 < layers[0]["gap"]["high"] and layers[1]["gap"]["low"] > 0
    assert set(summary["groups"]) == {"all", "gsm8k"}
    assert summary["plots"] and all((tmp_path / p.split("/")[-1]).stat().st_size > 0 for p in summary["plots"])
    json.dumps(summary)


def test_no_difference_gives_an_interval_around_zero():
    group = summarise_attention(records(20, 20, late_gap=0.0, seed=1))["groups"]["all"]
    assert group["gap"]["low"] < 0 < group["gap"]["high"]
    assert group["mann_whitney"]["p_value"] > 0.05


def test_empty_group_is_undefined_with_a_reason(tmp_path):
    summary = summarise_attention(records(0, 6, late_gap=0.0), plot_dir=tmp_path)
    group = summary["groups"]["all"]
    assert group["gap"]["value"] is None and "no failed" in group["gap"]["reason"]
    assert group["mann_whitney"]["p_value"] is None and group["mean"]["failed"]["mean"] is None
    assert group["mean"]["solved"]["n"] == 6


def test_per_task_groups_and_seeded_intervals():
    data = records(8, 8, 0.1, task="gsm8k") + records(8, 8, 0.0, seed=2, task="humaneval")
    first, again = summarise_attention(data, seed=3), summarise_attention(data, seed=3)
    assert first == again
    assert first["groups"]["gsm8k"]["n"] == first["groups"]["humaneval"]["n"] == {"failed": 8, "solved": 8}
    assert first["groups"]["all"]["n"] == {"failed": 16, "solved": 16}


def test_empty_outputs_are_counted_not_averaged():
    data = records(3, 3, 0.1)
    data[0]["per_step"], data[0]["per_layer"] = [], [[], []]
    summary = summarise_attention(data)
    assert summary["n_empty_outputs"] == 1 and summary["groups"]["all"]["n"]["failed"] == 2


def test_record_without_required_key_is_a_user_error():
    data = records(2, 2, 0.1)
    del data[1]["success"]
    with pytest.raises(UserError, match="lacks success"):
        summarise_attention(data)
