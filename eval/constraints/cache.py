"""On-disk cache of LLM completions keyed by (model id, prompt, sampling), so a rerun costs no calls.

One JSONL file per cache folder, appended to; a torn last line (a kill mid-write) is ignored on
load, so that call is simply made again. Only completions are stored, never errors: a call that
timed out is retried on the next run.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from sustain.eval.errors import UserError
from sustain.eval.generators.base import SamplingConfig


def cache_key(model_id: str, prompt: str, sampling: SamplingConfig) -> str:
    # batch_size changes how calls are grouped, not what greedy decoding returns.
    settings = {k: v for k, v in asdict(sampling).items() if k != "batch_size"}
    blob = json.dumps([model_id, prompt, settings], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class LLMCache:
    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / "llm_calls.jsonl"
        self._entries: dict[str, str] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # a torn write: cut it so the next append starts clean
                data = data[: data.rfind(b"\n") + 1]
                with self.path.open("r+b") as fh:
                    fh.truncate(len(data))
            for line in data.decode("utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    self._entries[row["key"]] = row["completion"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a damaged line: that call is made again

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        return self._entries.get(key)

    def put(self, key: str, model_id: str, completion: str) -> None:
        self._entries[key] = completion
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "model": model_id, "completion": completion}, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise UserError(f"cannot write the LLM cache {self.path}: {exc.strerror}", "free disk space or choose another run folder") from None
