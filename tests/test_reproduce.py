"""docs/REPRODUCE.md's script recomputes every headline figure of a summary from the records."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from sustain.eval.records import RecordStore, write_json_atomic
from sustain.eval.summary import write_summary

DOC = Path(__file__).resolve().parents[1] / "docs" / "REPRODUCE.md"


def script(tmp: Path) -> Path:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "REPRODUCE.md holds exactly one script"
    path = tmp / "reproduce.py"
    path.write_text(blocks[0])
    return path


def run_folder(tmp: Path) -> Path:
    """Two tasks, two families, k up to 2, a control run, an unsolved item and a missing constraint."""
    out = tmp / "run"
    write_json_atomic(out / "run.json", {"identity": {"seed": 0, "model": "m"},
                                         "config": {"families": ["hard", "soft"], "k_max": 2}})
    base, runs, control = [], [], []
    for task, n in (("arith", 9), ("gsm8k", 5)):
        for i in range(n):
            item = {"task": task, "item_id": str(i)}
            base.append({**item, "condition": "base", "success": i != 0, "output": "1"})
            control.append({**item, "condition": "control", "success": i % 4 != 1, "output": "1"})
            for family in ("hard", "soft"):
                for k in (1, 2):
                    if i == 2 or (k == 2 and i % 3 == 0):
                        continue  # item 2 got no constraint; some items lack a second one
                    runs.append({**item, "condition": f"{family}:k{k}", "family": family, "k": k,
                                 "constraints": [{"category": "length" if family == "hard" else "style"}] * k,
                                 "success": (i + k + (family == "soft")) % 3 != 0, "followed_all": True,
                                 "finish_reason": "stop", "answer": "1", "gold": "2", "output": "1"})
    RecordStore(out / "baseline.jsonl").append(base)
    RecordStore(out / "constrained.jsonl").append(runs)
    RecordStore(out / "control.jsonl").append(control)
    write_summary(out)
    return out


def test_reproduce_script_matches_the_summary(tmp_path):
    out = run_folder(tmp_path)
    done = subprocess.run([sys.executable, str(script(tmp_path)), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "every headline figure matches summary.json" in done.stdout
    assert done.stdout.count("SustainScore(k=1)") == 4  # 2 tasks x 2 families


def test_reproduce_script_catches_a_wrong_figure(tmp_path):
    out = run_folder(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    summary["sustain"]["headline"]["gsm8k"]["soft"]["control"]["value"] += 0.01
    (out / "summary.json").write_text(json.dumps(summary))
    done = subprocess.run([sys.executable, str(script(tmp_path)), str(out)], capture_output=True, text=True)
    assert done.returncode != 0 and "MISMATCH gsm8k/soft control" in done.stderr
