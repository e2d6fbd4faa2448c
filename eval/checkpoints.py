"""The one rule for checkpoint folders: `checkpoint-N` (N its training step), as TRL saves them and as
per-checkpoint evals are named (OUTPUT_DIR/eval/checkpoint-N)."""
from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: str | Path) -> int | None:
    """N of a checkpoint-N folder name; None for any other name."""
    m = CHECKPOINT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """The checkpoint-N folders directly in `root`, in step order (none when root does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)
