"""Shared fixtures: local data from ../shared/data, system-package checks, the cached tiny model."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SUSTAIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
IN_CI = bool(os.environ.get("CI"))


def missing(msg: str) -> None:
    """Something CI provides is absent: fail in CI, skip with the message (how to get it) elsewhere."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def need_data(relpath: str) -> Path:
    """A file under ../shared/data: fails in CI when missing, skips with a message elsewhere."""
    path = SHARED_DATA / relpath
    if not path.exists():
        missing(f"benchmark data missing: {path} (CI provides ../shared/data)")
    return path


def need_capability(works: bool, what: str) -> None:
    """A kernel/container capability: fails in CI (which has it), skips with a message elsewhere."""
    if not works:
        if IN_CI:
            pytest.fail(f"{what} (CI machines support it)")
        pytest.skip(what)


def need_command(cmd: str, debian_package: str) -> str:
    """A system command: fails in CI when missing, skips with the install command elsewhere."""
    found = shutil.which(cmd)
    if not found:
        missing(f"{cmd} not found: apt-get install {debian_package}")
    return found


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The offline tiny base model trained on `arith` (train/tiny.py), built once and cached
    across sessions under .cache/ (git-ignored); a first build takes a few minutes on 2 cores."""
    from sustain.train.tiny import cache_dir, ensure_tiny_base

    return ensure_tiny_base(cache_dir())  # where `make tiny-model` built it
