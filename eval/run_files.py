"""Reading a run folder safely: run.json, the record files, and the one-writer lock.

Everything here turns a damaged or foreign folder into one UserError that names the file and what is
wrong with it, so that every subcommand (eval, summary, audit, failures, attention, report) refuses
the same damage the same way.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path

from sustain.eval.errors import UserError, os_error
from sustain.eval.records import RecordStore

RUN_JSON = "run.json"
LOCK_FILE = ".sustain.lock"
# Fields each record file's records must carry (with their types) for the readers to use them.
RECORD_FIELDS = {
    "baseline.jsonl": {"success": bool, "output": str},
    "constraints.jsonl": {"candidates": list},
    "constrained.jsonl": {"success": bool, "output": str, "family": str, "k": int, "constraints": list},
    "control.jsonl": {"success": bool, "output": str},
}


def read_run_json(folder: str | Path, required: bool = True) -> dict | None:
    """run.json as a mapping with an `identity` mapping; None when absent and not required."""
    path = Path(folder) / RUN_JSON
    if not path.is_file():
        if required:
            raise UserError(f"{Path(folder)} is not an eval run folder: no {RUN_JSON}",
                            "pass the --out folder of a `sustain eval` run")
        return None
    meta = read_json_file(path, "delete the run folder and rerun `sustain eval`")
    if not isinstance(meta, dict) or not isinstance(meta.get("identity"), dict):
        raise UserError(f"{path} is not a run.json written by `sustain eval` (no identity mapping)",
                        "restore it, or delete the run folder and rerun `sustain eval`")
    return meta


def read_json_file(path: Path, remedy: str = "delete it to have it recomputed"):
    """A JSON file of a run folder; unreadable or corrupt is one line naming which."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise os_error("read", path, exc) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not valid JSON: cut short by a full disk, or edited by hand?)",
                        f"restore it, or {remedy}") from None


def identity_value(meta: dict, key: str, path: Path):
    """A key of run.json's identity that the readers cannot do without."""
    if key not in meta["identity"]:
        raise UserError(f"{path / RUN_JSON} lacks identity.{key}",
                        "restore it, or delete the run folder and rerun `sustain eval`")
    return meta["identity"][key]


def open_records(folder: str | Path, name: str, must_exist: bool = False, create: bool = False) -> RecordStore | None:
    """A record file of a run folder, each record checked for the fields its readers use; a missing one
    is an error (must_exist), an empty store to append to (create), or None."""
    path = Path(folder) / name
    if not path.exists():
        if must_exist:
            raise UserError(f"{path} not found", "run `sustain eval` into that folder first")
        return RecordStore(path) if create else None
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a record file", "remove it and rerun `sustain eval`")
    store = RecordStore(path)
    fields = RECORD_FIELDS.get(name, {})
    for lineno, rec in enumerate(store, 1):
        for key, kind in fields.items():
            value = rec.get(key)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise UserError(f"{path}: record {lineno} ({rec['task']}/{rec['item_id']}) has no valid {key!r}",
                                "restore the file or delete it to recompute that stage")
    return store


def records(folder: str | Path, name: str) -> list[dict]:
    store = open_records(folder, name)
    return list(store) if store is not None else []


def has_records(folder: str | Path) -> bool:
    """True when any record file of the folder holds a line (a claim worth protecting)."""
    return any((Path(folder) / name).is_file() and (Path(folder) / name).stat().st_size > 0 for name in RECORD_FIELDS)


class RunLock:
    """One writer per run folder: an flock on a file inside it. The kernel drops the lock when the
    process ends, however it ends, so a killed run never leaves the folder stuck."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._fh = None

    def acquire(self) -> RunLock:
        import fcntl

        path = self.folder / LOCK_FILE
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+", encoding="utf-8")
        except OSError as exc:
            raise os_error("write", path, exc, flag="--out") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UserError(f"run folder {self.folder} is in use by another sustain process (pid {holder})",
                                "wait for it to finish, or choose another --out") from None
            raise os_error("lock", path, exc, flag="--out") from None
        with contextlib.suppress(OSError):  # the pid is only a hint for the message above
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
