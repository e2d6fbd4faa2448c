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
from sustain.eval.errors import UserError, os_error

Key = tuple[str, str, str]


def record_key(rec: dict) -> Key:
    return (rec["task"], str(rec["item_id"]), rec["condition"])


def is_record(rec) -> bool:
    """A JSON object keyed by a text task, a text or integer item id, and a text condition."""
    return (isinstance(rec, dict) and isinstance(rec.get("task"), str) and isinstance(rec.get("condition"), str)
            and isinstance(rec.get("item_id"), (str, int)) and not isinstance(rec.get("item_id"), bool))


class RecordStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._records: dict[Key, dict] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise os_error("read", self.path, exc) from None
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
            if not is_record(rec):
                raise UserError(f"{self.path}: line {i + 1} is not a record (a JSON object with task, item_id and condition)",
                                "restore the file or delete it to recompute that stage")
            self._records[record_key(rec)] = rec
            good_end += len(raw) + 1
        if good_end < len(data):
            try:
                with self.path.open("r+b") as fh:
                    fh.truncate(good_end)
            except OSError as exc:
                raise os_error("repair the torn last line of", self.path, exc) from None

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
        payload = payload.encode("utf-8", "surrogatepass").decode("utf-8", "replace")  # undecodable bytes
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # inside: --out may be a file, or the disk full
            with self.path.open("a", encoding="utf-8") as fh:
                faults.before_write(fh, payload)
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self._load_again()
            raise os_error("write", self.path, exc, flag="--out") from None
        for r in new:
            self._records[record_key(r)] = r

    def _load_again(self) -> None:
        """After a failed write (e.g. a full disk) cut any partial line so the file stays valid."""
        self._records.clear()
        self._load()


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON through a temp file and rename, so a reader never sees a partial file."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_text_atomic(path, text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


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
        raise os_error("write", path, exc, flag="--out") from None
