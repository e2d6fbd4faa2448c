"""The one Task interface: load items, build the chat prompt, grade an output."""
from __future__ import annotations

import gzip
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sustain.eval.errors import UserError
from sustain.eval.tasks.reasoning import strip_reasoning  # noqa: F401  (tasks import it from here)


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str  # the task instruction shown to the model, without any added constraint
    gold: Any  # what grade() compares against
    meta: dict = field(default_factory=dict)


@dataclass
class Grade:
    success: bool
    answer: str | None  # the extracted answer; None when nothing could be extracted
    score: float  # a graded value in [0, 1] (F1, fraction of tests passed, or success as 0/1)
    detail: dict = field(default_factory=dict)  # e.g. {"reason": "timeout"} or {"f1": 0.4}
    # The output states its answer as final (an answer sentence, a box, an "Answer:" line, code); False
    # when the grader guessed it from the text (the last number, the last line).
    explicit: bool = True

    def to_dict(self) -> dict:
        return {"success": self.success, "answer": self.answer, "score": self.score, "detail": self.detail,
                "explicit": self.explicit}


# The end of a sentence or a line: what follows the last one in a cut output is unfinished.
SENTENCE_BOUNDARY_RE = re.compile(r"[.!?](?=\s)|\n")


def finished_part(text: str) -> str:
    """A cut output without its unfinished last sentence ("The answer is 15" may have been 150)."""
    ends = [m.end() for m in SENTENCE_BOUNDARY_RE.finditer(text)]
    return text[:ends[-1]] if ends else ""


def judge_cut_output(grade: Grade, finish_reason: str | None) -> Grade:
    """An output cut at the token limit is solved only if it states its answer: a number guessed from
    a loop that hit the limit is not an answer."""
    if finish_reason == "length" and not grade.explicit:
        grade.success, grade.score = False, 0.0
        grade.detail = {**grade.detail, "cut_before_answer": True}
    return grade


ANSWER_KINDS = ("number", "text", "code")


class Task(ABC):
    """A benchmark. Subclasses set `name`, implement load/grade, and declare what they need; generic code
    (pipeline, failure analysis, attention) reads these declarations and never a task's name."""

    name: str = ""
    system_prompt: str | None = None
    #: what grade() extracts and compares: "number", "text" or "code" (failure analysis sorts failed
    #: code answers into syntax and runtime errors).
    answer_kind: str = "text"
    #: grade() runs model output: the task's constructor then takes the run's sandbox settings
    #: (SANDBOX_SETTINGS) and close() stops its workers.
    runs_code: bool = False
    #: stop strings for every generation of this task (generation ends before them).
    stop: tuple[str, ...] = ()
    #: train_rows(n, seed=..., instruction_rate=...) generates its own training rows (synthetic tasks).
    generates_train_rows: bool = False

    @abstractmethod
    def load(self, split: str = "test", limit: int | None = None) -> list[Item]:
        """Items of a split, in a fixed order; `limit` keeps the first N."""

    @abstractmethod
    def grade(self, item: Item, output: str) -> Grade:
        """Grade one model output for one item."""

    def grade_many(self, items: list[Item], outputs: list[str]) -> list[Grade]:
        """Grade a batch; tasks that run code override this to use sandbox workers."""
        return [self.grade(it, out) for it, out in zip(items, outputs)]

    def grade_generations(self, items: list[Item], generations: list) -> list[Grade]:
        """Grade generations (`.text`, `.finish_reason`); an output cut at the token limit is graded on
        its finished part, and solved only if that states its answer."""
        texts = [finished_part(g.text) if g.finish_reason == "length" else g.text for g in generations]
        grades = self.grade_many(items, texts)
        return [judge_cut_output(gr, g.finish_reason) for gr, g in zip(grades, generations)]

    def close(self) -> None:
        """Release resources (sandbox workers); a no-op for tasks that hold none."""

    def sandbox_mode(self) -> str | None:
        """The code sandbox grading uses (None: this task runs no code); a UserError if it cannot run here."""
        return None

    def hidden_answer(self, item: Item) -> dict:
        """What a back-translated constraint must not reveal: {"answer": the gold as text}. Code tasks
        return {"test_code": ..., "entry_point": ...} instead (the identifiers their tests call)."""
        return {"answer": str(item.gold)} if isinstance(item.gold, (str, int, float)) else {}

    def messages(self, item: Item, constraint: str | None = None, position: str = "append") -> list[dict]:
        """Chat messages for an item, with an optional constraint text.

        position: "append" (after the instruction, the paper's default), "prepend", or "system".
        """
        user = item.prompt
        system = self.system_prompt
        if constraint:
            if position == "append":
                user = f"{user}\n\n{constraint}"
            elif position == "prepend":
                user = f"{constraint}\n\n{user}"
            elif position == "system":
                system = f"{system}\n\n{constraint}" if system else constraint
            else:
                raise UserError(f"unknown constraint position {position!r}", "use one of: append, prepend, system")
        msgs = [{"role": "system", "content": system}] if system else []
        msgs.append({"role": "user", "content": user})
        return msgs


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[dict]:
    """Read a JSONL (or .jsonl.gz) file; a missing file, a bad line or a missing field is a UserError naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"data file not found: {path}", "pass an existing JSONL path or a hub dataset name")
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{lineno} is not valid JSON ({exc.msg})", "fix or remove that line") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{lineno} is not a JSON object", "write one {...} record per line")
                missing = [k for k in required if k not in row]
                if missing:
                    raise UserError(f"{path}:{lineno} lacks field(s) {', '.join(missing)}",
                                    f"each line needs: {', '.join(required)}")
                check_field_types(row, required, f"{path}:{lineno}")
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})", "re-encode the file as UTF-8") from None
    except (OSError, EOFError) as exc:  # e.g. a .gz that is not gzip, or a truncated one
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc})", "pass an uncorrupted JSONL or .jsonl.gz file") from None
    if not rows:
        raise UserError(f"data file is empty: {path}", "point to a file with at least one record")
    return rows


def check_field_types(row: dict, required, where: str) -> None:
    """`required` may map a field to the type(s) it must have: a number where text is expected, or a
    null/list question, is refused at load instead of becoming a prompt or crashing a grader."""
    if not isinstance(required, dict):
        return
    for key, kinds in required.items():
        value = row.get(key)
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if not isinstance(value, kinds) or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
            names = " or ".join("text" if k is str else k.__name__ for k in kinds)
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise UserError(f"{where}: field {key!r} must be non-empty {names}, got {shown}",
                            f"fix that line: {key} holds {names}")


def looks_like_local_path(source: str) -> bool:
    """True for an existing file/folder or a path-like string, so a typo fails as 'not found', not as a hub call."""
    return Path(source).expanduser().exists() or source.startswith((".", "/", "~")) or source.endswith((".jsonl", ".json"))


def load_rows(source: str, split: str, required: Iterable[str] = (), hub_config: str | None = None) -> list[dict]:
    """Rows of a split from a local JSONL file, a folder holding `<split>.jsonl`, or a hub dataset name."""
    if looks_like_local_path(source):
        path = Path(source).expanduser()
        return read_jsonl(path / f"{split}.jsonl" if path.is_dir() else path, required)
    return load_hub_split(source, hub_config, split)


def load_hub_split(name: str, config: str | None, split: str) -> list[dict]:
    """One split of a hub dataset as plain dicts; hub failures become a UserError pointing to local files."""
    import datasets  # imported here: a slow import that local-file users never need
    from datasets.exceptions import DatasetNotFoundError

    from sustain.eval.hub import quiet_hub

    try:
        with quiet_hub(name):
            rows = datasets.load_dataset(name, config, split=split)
    except DatasetNotFoundError:
        raise UserError(f"dataset {name!r} not found on the hub", "check the name or pass a local JSONL path") from None
    except OSError as exc:  # ConnectionError, offline mode, timeouts
        raise UserError(
            f"the hub is unreachable for dataset {name!r} ({type(exc).__name__})", "pass a local JSONL path instead"
        ) from None
    except ValueError as exc:  # e.g. an unknown split or config
        raise UserError(f"cannot load {name!r} split {split!r}: {str(exc).splitlines()[0]}", "check split and config names") from None
    return rows.to_list()
