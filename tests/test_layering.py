"""The layering promises, checked on the source text (docs/ARCHITECTURE.md states them):
sustain.eval never imports sustain.train; no module outside its registry's folder names a task or a backend;
every source file stays short; no comment points at a file outside the repo."""
from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from sustain.eval.generators import BACKENDS
from sustain.eval.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ("eval", "train", "sustain")  # the installed source: sustain.eval, sustain.train, sustain
MAX_LINES = 400


def sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("sustain.train"):
            names.add(node.value)  # importlib.import_module("sustain.train..."), registry specs
    return names


def test_eval_never_imports_train():
    offenders = [f"{rel(p)} imports {m}" for p in sources("eval")
                 for m in sorted(imported_modules(ast.parse(p.read_text())))
                 if m == "sustain.train" or m.startswith("sustain.train.")]
    assert not offenders, offenders


def string_constants(tree: ast.AST):
    """String literals that are not docstrings (a docstring may mention a task to explain the module)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def names_used(path: Path, names, shown: str | None = None) -> list[str]:
    word = re.compile(r"(?<![\w./-])(%s)(?![\w/-])" % "|".join(map(re.escape, names)))
    return [f"{shown or rel(path)}:{node.lineno} names {m.group(1)!r}"
            for node in string_constants(ast.parse(path.read_text())) for m in word.finditer(node.value)]


@pytest.mark.parametrize("kind, names, home", [("task", TASKS, "eval/tasks"), ("backend", BACKENDS, "eval/generators")])
def test_only_the_registry_folder_names_a_task_or_a_backend(kind, names, home):
    """Generic code reads what a task or backend declares; a name in a string there is a special case."""
    offenders = [hit for p in sources(*PACKAGE) if not rel(p).startswith(home + "/") for hit in names_used(p, names)]
    assert not offenders, offenders


def test_the_name_check_catches_a_special_case(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('"""Mentions arith in a docstring: allowed."""\nif task == "arith":\n    pass\nx = "arithmetic"\n')
    assert names_used(probe, TASKS, "probe.py") == ["probe.py:2 names 'arith'"]


def test_source_files_stay_short():
    """One job per file: a reader understands each one in a sitting."""
    long = [f"{rel(p)}: {n} lines" for p in sources(*PACKAGE, "tests", "benchmarks")
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, f"split these (over {MAX_LINES} lines): {long}"


# Notes files live outside the repo: a comment that points at one leaves a reader of a clone with nothing.
# The shared benchmark data folder beside the repo is the one outside path the suite documents
# ($SUSTAIN_SHARED_DATA overrides it).
OUTSIDE = re.compile(r"NOTES[\w-]*\.md|\.\./(?!shared/data\b)|(?<![\w./-])shared/(?!data\b)")
TEXT = (".py", ".md", ".sh", ".slurm", ".yaml", ".toml", ".txt", ".cfg", "Makefile", "run")


def repo_files() -> list[Path]:
    """Tracked and new (not ignored) files."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_no_comment_points_outside_the_repo():
    files = [p for p in repo_files() if p.name.endswith(TEXT) and p != Path(__file__).resolve()]
    hits = [f"{rel(p)}:{i}: {line.strip()}" for p in files
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, hits
