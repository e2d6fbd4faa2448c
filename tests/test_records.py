import json

import pytest

from sustain.eval.errors import UserError
from sustain.eval.records import RecordStore, write_json_atomic


def rec(i, cond="base"):
    return {"task": "arith", "item_id": str(i), "condition": cond, "value": i}


def test_append_skips_existing_keys_and_reloads(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.append([rec(1), rec(2)])
    store.append([rec(2), rec(3)])
    again = RecordStore(path)
    assert len(again) == 3
    assert len(path.read_text().splitlines()) == 3
    assert ("arith", "2", "base") in again


def test_torn_last_line_is_cut_and_redone(tmp_path):
    path = tmp_path / "r.jsonl"
    RecordStore(path).append([rec(1), rec(2)])
    whole = path.read_bytes()
    path.write_bytes(whole + json.dumps(rec(3)).encode()[:-5])  # a kill mid-write
    store = RecordStore(path)
    assert len(store) == 2 and ("arith", "3", "base") not in store
    assert path.read_bytes() == whole
    store.append([rec(3)])
    assert len(RecordStore(path)) == 3


def test_corrupt_middle_line_is_an_error_not_silence(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec(1)) + "\n{broken\n" + json.dumps(rec(2)) + "\n")
    with pytest.raises(UserError, match="line 2 is corrupt"):
        RecordStore(path)


def test_atomic_json(tmp_path):
    write_json_atomic(tmp_path / "s.json", {"a": 1})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
