"""Read back what an offline W&B run stored: the history rows of its run-*.wandb file.

wandb 0.31 ships no Python reader for its transaction log, but the format is stable and simple:
a LevelDB-style log (32 KiB blocks; each chunk a 7-byte header of crc32, length, type; records may
span blocks as FIRST/MIDDLE/LAST chunks) whose first 7 bytes are the W&B header, and whose records
are wandb_internal_pb2.Record protobufs (wandb's own message definitions).
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(data: bytes):
    pos, pending = HEADER, b""  # skip the ":W&B" file header
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if pos + HEADER + length > len(data):
            break  # a chunk still being written
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:
            break


def _parsed(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    records = []
    for raw in _records(path.read_bytes()):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        records.append(rec)
    return records


def history(run_dir: str | Path, timeout: float = 600.0) -> list[dict]:
    """Every logged row of an offline run folder (…/wandb/offline-run-*) as {key: value}.

    wandb-core writes the file in its own process, which may still be flushing after run.finish()
    or the training process returned: wait for the run's final "exit" record.
    """
    (path,) = Path(run_dir).glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    records = _parsed(path)
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout:.0f} s: the run did not finish")
        time.sleep(0.2)
        records = _parsed(path)
    rows = []
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            row: dict = {}
            for item in rec.history.item:
                path = [item.key] if item.key else list(item.nested_key)  # media values nest: [name, "_type"]
                node = row
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = json.loads(item.value_json)
            rows.append(row)
    return rows


def run_dirs(wandb_dir: str | Path) -> list[Path]:
    return sorted(Path(wandb_dir).glob("wandb/offline-run-*"))
