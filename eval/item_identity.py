"""Records tied to the data that made them: a fingerprint of each item's content.

Baseline records carry their item's fingerprint; a rerun into the same folder whose loaded item
has the same id but other content (another data file, an edited row) is refused, so records made
from other questions are never reused. Adding items, tasks or families only adds records.
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterable

from sustain.eval.errors import UserError


def item_fingerprint(item) -> str:
    """sha256 (16 hex digits) of what the model is asked and what it is graded against."""
    content = json.dumps({"prompt": item.prompt, "gold": item.gold}, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def data_fingerprint(items: Iterable) -> dict:
    """One task's loaded items: their count and one hash over (id, fingerprint) in load order."""
    h = hashlib.sha256()
    n = 0
    for it in items:
        h.update(f"{it.id}\t{item_fingerprint(it)}\n".encode())
        n += 1
    return {"items": n, "sha256": h.hexdigest()[:16]}


def refuse_changed_items(base_records: Iterable[dict], items: dict[str, dict], folder) -> None:
    """One-line error when a baseline record's item now has other content (or no fingerprint)."""
    fix = "use a new --out for this data, or delete the folder to start over"
    for r in base_records:
        item = items.get(r["task"], {}).get(str(r["item_id"]))
        if item is None:
            continue  # not loaded this time (another --limit or task list): left as it is
        theirs = r.get("item_hash")
        if theirs is None:
            raise UserError(f"run folder {folder} holds {r['task']} item {r['item_id']} without a data fingerprint "
                            "(made by an older sustain)", fix)
        if theirs != item_fingerprint(item):
            raise UserError(f"run folder {folder} holds {r['task']} item {r['item_id']} made from other data "
                            "(its question or answer differs from the loaded one)", fix)
