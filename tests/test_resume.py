"""Kill the eval at seeded record writes (SIGKILL mid-write), resume, and compare with an uninterrupted run."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from sustain.eval.records import RecordStore

STAGES = ("baseline.jsonl", "constraints.jsonl", "constrained.jsonl", "control.jsonl")
ROOT = Path(__file__).resolve().parents[1]


def sustain_eval(model: Path, out: Path, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SUSTAIN_KILL_AT_WRITE", None)
    if kill_at:
        env["SUSTAIN_KILL_AT_WRITE"] = str(kill_at)
    # batch 8: a constrained batch is two writes (control.jsonl, constrained.jsonl), so this keeps the
    # number of writes (and of kills to resume from) that single-store batches of 4 had
    cmd = [sys.executable, "-m", "sustain", "eval", "--model", str(model), "--tasks", "arith", "--limit", "24",
           "--k-max", "2", "--max-new-tokens", "48", "--batch-size", "8", "--out", str(out)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def snapshot(out: Path) -> dict:
    return {name: sorted(RecordStore(out / name), key=lambda r: (r["task"], r["item_id"], r["condition"]))
            for name in STAGES}


@pytest.mark.slow
def test_sigkill_at_seeded_points_then_resume_equals_uninterrupted(tiny_model, tmp_path):
    reference = tmp_path / "reference"
    assert sustain_eval(tiny_model, reference).returncode == 0
    expected = snapshot(reference)

    out = tmp_path / "killed"
    rng = random.Random(20260125)
    kills, torn_stages = 0, set()
    for _ in range(60):  # each run gets at least one write further before it dies
        sizes = {n: (out / n).stat().st_size if (out / n).exists() else 0 for n in STAGES}
        proc = sustain_eval(tiny_model, out, kill_at=rng.randint(3, 5))
        if proc.returncode == 0:
            break
        assert proc.returncode == -9, proc.stderr[-2000:]
        kills += 1
        for n in STAGES:  # the stage whose file grew by a partial line is the one that was torn
            if (out / n).exists() and (out / n).stat().st_size > sizes[n] and not (out / n).read_bytes().endswith(b"\n"):
                torn_stages.add(n)
    else:
        pytest.fail("the resumed eval never finished")
    print(f"{kills} kills, torn: {sorted(torn_stages)}")
    assert kills >= 4, kills
    assert len(torn_stages) >= 2, torn_stages  # the kills landed in more than one stage
    assert snapshot(out) == expected
    assert (out / "summary.json").read_text() == (reference / "summary.json").read_text()
