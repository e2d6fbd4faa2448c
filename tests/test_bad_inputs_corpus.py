"""Every CLI subcommand on a corpus of damaged run folders: a traceback anywhere fails the suite.

One real run folder (the tiny model, a few arith items) is damaged in one way per copy; each
subcommand (eval, summary, audit, failures, attention, report, and the training side's sync and
report on a training output_dir) either succeeds or ends with one line and exit 2, and never
rewrites the records it was given.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sustain.eval.cli import main as sustain
from test_bad_inputs import visible_lines


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def replace_line(path: Path, index: int, text: str) -> None:
    rows = lines_of(path)
    rows[index] = text
    path.write_text("\n".join(rows) + "\n")


def edit_first(path: Path, change) -> None:
    rows = lines_of(path)
    rec = json.loads(rows[0])
    change(rec)
    rows[0] = json.dumps(rec)
    path.write_text("\n".join(rows) + "\n")


# name -> how to damage a copy of a good run folder
DAMAGE = {
    "run.json truncated": lambda f: (f / "run.json").write_text((f / "run.json").read_text()[:40]),
    "run.json a list": lambda f: (f / "run.json").write_text("[]"),
    "run.json empty object": lambda f: (f / "run.json").write_text("{}"),
    "run.json without model": lambda f: (f / "run.json").write_text(json.dumps({"identity": {"seed": 0}, "config": {}})),
    "run.json config a string": lambda f: (f / "run.json").write_text(
        json.dumps({**json.loads((f / "run.json").read_text()), "config": "x"})),
    "run.json seed text": lambda f: (f / "run.json").write_text(
        json.dumps({**json.loads((f / "run.json").read_text()), "identity": {"model": "m", "seed": "zero"}})),
    "run.json missing": lambda f: (f / "run.json").unlink(),
    "run.json not UTF-8": lambda f: (f / "run.json").write_bytes(b'{"identity": "\xff\xfe"}'),
    "baseline {} line": lambda f: replace_line(f / "baseline.jsonl", 0, "{}"),
    "baseline list line": lambda f: replace_line(f / "baseline.jsonl", 0, "[1, 2]"),
    "baseline corrupt middle line": lambda f: replace_line(f / "baseline.jsonl", 1, "{not json"),
    "baseline record without success": lambda f: edit_first(f / "baseline.jsonl", lambda r: r.pop("success")),
    "baseline item_id null": lambda f: edit_first(f / "baseline.jsonl", lambda r: r.update(item_id=None)),
    "baseline torn last line": lambda f: (f / "baseline.jsonl").write_text((f / "baseline.jsonl").read_text()[:-30]),
    "baseline empty file": lambda f: (f / "baseline.jsonl").write_text(""),
    "baseline a folder": lambda f: ((f / "baseline.jsonl").unlink(), (f / "baseline.jsonl").mkdir()),
    "constraints candidates not a list": lambda f: edit_first(f / "constraints.jsonl", lambda r: r.update(candidates="x")),
    "constraints candidate empty": lambda f: edit_first(f / "constraints.jsonl", lambda r: r.update(candidates=[{}])),
    "constraints for an unknown item": lambda f: edit_first(f / "constraints.jsonl", lambda r: r.update(item_id="nope")),
    "constrained without family": lambda f: edit_first(f / "constrained.jsonl", lambda r: r.pop("family")),
    "constrained k text": lambda f: edit_first(f / "constrained.jsonl", lambda r: r.update(k="one")),
    "constrained not UTF-8": lambda f: (f / "constrained.jsonl").write_bytes(b'{"task": "\xff"}\n' + (f / "constrained.jsonl").read_bytes()),
    "summary.json truncated": lambda f: (f / "summary.json").write_text((f / "summary.json").read_text()[:50]),
    "summary.json a list": lambda f: (f / "summary.json").write_text("[]"),
    "attention_summary corrupt": lambda f: (f / "attention_summary.json").write_text("{"),
    "records only": lambda f: [(f / n).unlink() for n in ("run.json", "summary.json")],
}


@pytest.fixture(scope="module")
def good_run(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "good"
    code = sustain(["eval", "--model", str(tiny_model), "--limit", "6", "--max-new-tokens", "24", "--batch-size", "6",
                    "--out", str(out)])
    assert code == 0
    assert (out / "constrained.jsonl").is_file() and (out / "constraints.jsonl").is_file()
    return out


def commands(folder: Path, model: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "eval": ["eval", "--model", str(model), "--limit", "6", "--max-new-tokens", "24", "--batch-size", "6", "--out", str(folder)],
        "summary": ["summary", str(folder)],
        "audit": ["audit", str(folder), "--n", "3"],
        "failures": ["failures", str(folder)],
        "attention": ["attention", str(folder), "--batch-size", "4"],
        "report": ["report", str(folder), "--out", str(tmp / "report")],
    }


def check(argv: list[str], capsys, problems: list[str], label: str) -> None:
    capsys.readouterr()
    try:
        code = sustain(argv)
    except BaseException as exc:  # noqa: BLE001 - a traceback is what this test hunts
        problems.append(f"{label}: raised {type(exc).__name__}: {exc}"[:300])
        return
    err = capsys.readouterr().err
    if "Traceback" in err or code not in (0, 2):
        problems.append(f"{label}: exit {code}: {err[-300:]}")
    elif code == 2:
        shown = [line for line in visible_lines(err) if line.startswith("sustain: error:") or "Error" in line]
        if len(shown) != 1 or "(fix: " not in shown[0]:
            problems.append(f"{label}: not one line with a fix: {shown}")


def test_every_subcommand_on_every_damaged_run_folder(good_run, tiny_model, tmp_path, capsys):
    problems: list[str] = []
    for name, damage in DAMAGE.items():
        for command in ("summary", "audit", "failures", "attention", "report", "eval"):
            folder = tmp_path / f"{len(problems)}-{command}-{abs(hash(name))}"
            shutil.copytree(good_run, folder)
            if name == "attention_summary corrupt":
                (folder / "attention_summary.json").write_text("{}")
            damage(folder)
            records = {p.name: p.read_bytes() for p in folder.glob("*.jsonl") if p.is_file()}
            check(commands(folder, tiny_model, tmp_path)[command], capsys, problems, f"{name} / {command}")
            if command != "eval" and "torn" not in name:  # readers never rewrite records
                after = {p.name: p.read_bytes() for p in folder.glob("*.jsonl") if p.is_file() and p.name in records}
                if after != records:
                    problems.append(f"{name} / {command}: records changed")
    assert not problems, "\n".join(problems)


def test_training_side_commands_on_a_damaged_output_dir(good_run, tmp_path, capsys):
    """`sustain sync` and `sustain report` on a training output_dir whose eval folders are damaged."""
    from sustain.cli import main as sustain_top

    problems: list[str] = []
    root = tmp_path / "train-out"
    for step, name in enumerate(["summary.json truncated", "summary.json a list", "run.json a list"], start=1):
        folder = root / "eval" / f"checkpoint-{step}"
        shutil.copytree(good_run, folder)
        DAMAGE[name](folder)
    (root / "run_info.json").write_text("{broken")
    for label, run_json in (("no W&B run", None), ("W&B run file corrupt", "{"), ("W&B run file a list", "[]")):
        if run_json is not None:
            (root / "eval" / "wandb_run.json").write_text(run_json)
        capsys.readouterr()
        try:
            code = sustain_top(["sync", str(root)])
        except BaseException as exc:  # noqa: BLE001
            problems.append(f"sync / {label}: raised {type(exc).__name__}: {exc}"[:300])
            continue
        err = capsys.readouterr().err
        if code != 2 or "Traceback" in err or len(visible_lines(err)) != 1:
            problems.append(f"sync / {label}: exit {code}: {err[-300:]}")
    check(["report", str(root), "--out", str(tmp_path / "rep")], capsys, problems, "report / damaged output_dir")
    (root / "run_info.json").unlink()
    check(["report", str(root), "--out", str(tmp_path / "rep")], capsys, problems, "report / pending checkpoints")
    assert not problems, "\n".join(problems)
