"""The one record store: a JSONL file of records keyed by (task, item id, condition).

Stages append and skip keys already present, so a rerun is free and a resume after a kill gives
the same records as an uninterrupted run. A torn last line (a kill mid-write) is detected by the
missing newline or bad JSON and cut off, so the record is redone rather than kept half-written.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from sustain.eval import faults
from sustain.eval.errors import UserError

Key = tuple[str, str, str]


def record_key(rec: dict) -> Key:
    return (rec["task"], str(rec["item_id"]), rec["condition"])


class RecordStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._records: dict[Key, dict] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        lines = data.split(b"\n")
        for i, raw in enumerate(lines):
            last = i == len(lines) - 1
            if last:  # bytes after the final newline: a torn write, dropped below
                break
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if i == len(lines) - 2 and lines[-1] == b"":
                    break  # torn final line that happened to end in a newline
                raise UserError(
                    f"{self.path}: line {i + 1} is corrupt (not the last line, so not a torn write)",
                    "restore the file or delete it to recompute that stage",
                ) from None
            self._records[record_key(rec)] = rec
            good_end += len(raw) + 1
        if good_end < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)

    def __contains__(self, key: Key) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self._records.values())

    def get(self, key: Key) -> dict | None:
        return self._records.get(key)

    def append(self, records: Iterable[dict]) -> None:
        """Append records (durably: flushed and fsynced) and index them; existing keys are skipped."""
        new = [r for r in records if record_key(r) not in self._records]
        if not new:
            return
        payload = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in new)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # inside: --out may be a file, or the disk full
            with self.path.open("a", encoding="utf-8") as fh:
                faults.before_write(fh, payload)
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self._load_again()
            raise UserError(f"cannot write {self.path}: {exc.strerror}", "free disk space or choose another --out") from None
        for r in new:
            self._records[record_key(r)] = r

    def _load_again(self) -> None:
        """After a failed write (e.g. a full disk) cut any partial line so the file stays valid."""
        self._records.clear()
        self._load()


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON through a temp file and rename, so a reader never sees a partial file."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text through a temp file and rename, so a reader never sees a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # inside: --out may be a file, or the disk full
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # e.g. its folder is a file: there is no temp file to remove
            tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}", "free disk space or choose another --out") from None
