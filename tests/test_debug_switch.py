"""SUSTAIN_DEBUG=1 shows the traceback behind a one-line error; without it the user sees the one line."""
from __future__ import annotations

import os
import subprocess
import sys


def sustain(args: list[str], cwd, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "SUSTAIN_DEBUG"} | env
    return subprocess.run([sys.executable, "-m", "sustain", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=300)


def test_debug_switch_shows_the_traceback_behind_the_one_line_error(tmp_path):
    args = ["summary", str(tmp_path / "no-run")]
    plain = sustain(args, tmp_path)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f"sustain: error: {tmp_path / 'no-run'} is not an eval run folder: no run.json "
        "(fix: pass the --out folder of a `sustain eval` run)"]
    debug = sustain(args, tmp_path, SUSTAIN_DEBUG="1")
    assert debug.returncode != 0 and debug.stderr.startswith("Traceback (most recent call last):")
    assert "summary.py" in debug.stderr and "in write_summary" in debug.stderr  # where it was raised
    assert debug.stderr.rstrip().endswith(f"UserError: {tmp_path / 'no-run'} is not an eval run folder: no run.json "
                                          "(fix: pass the --out folder of a `sustain eval` run)")
