"""One import root: the repo's eval/ and train/ install as sustain.eval and sustain.train, and a user's
own train.py, eval/ or train/ folder in the working directory changes nothing (editable and wheel)."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sustain.eval.cli, sustain.train.callbacks, sustain.train.config, builtins;"
         "assert eval is builtins.eval;"
         "print(sustain.eval.cli.__file__); print(sustain.train.callbacks.__file__)")


def user_repo(tmp_path: Path) -> Path:
    """A nanoGPT-style user folder: its own train.py, an eval/ package and a data folder named train/."""
    repo = tmp_path / "user repo"
    (repo / "eval").mkdir(parents=True)
    (repo / "eval" / "__init__.py").write_text("raise SystemExit('the user eval package was imported')\n")
    (repo / "train").mkdir()
    (repo / "train" / "shard-000.bin").write_bytes(b"\0" * 16)
    (repo / "train.py").write_text("raise SystemExit('the user train.py was imported')\n")
    return repo


def run_in(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env or dict(os.environ))


def test_package_list_names_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    found = {"sustain." + str(p.parent.relative_to(ROOT)).replace("/", ".")
             for top in ("eval", "train") for p in (ROOT / top).rglob("__init__.py")} | {"sustain"}
    assert declared == found
    assert config["package-dir"] == {"sustain.eval": "eval", "sustain.train": "train"}


def test_editable_install_ignores_the_users_train_and_eval(tmp_path):
    repo = user_repo(tmp_path)
    proc = run_in(repo, "-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    assert all(Path(line).is_relative_to(ROOT) for line in proc.stdout.split())
    proc = run_in(repo, "-m", "sustain", "train", "sft", "--help")
    assert proc.returncode == 0 and "usage: sustain train sft" in proc.stdout, proc.stderr


def test_built_wheel_has_one_import_root_and_works_beside_user_folders(tmp_path):
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = wheels.glob("sustain_suite-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"sustain"}
    assert "sustain/eval/constraints/prompts/soft_judge.txt" in names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    repo = user_repo(tmp_path)
    proc = run_in(repo, "-c", PROBE, env=dict(os.environ, PYTHONPATH=str(target)))
    assert proc.returncode == 0, proc.stderr
    assert all(Path(line).is_relative_to(target) for line in proc.stdout.split())


@pytest.mark.parametrize("argv", [["train"], ["train", "ppo"]])
def test_train_without_a_known_trainer_is_one_line(argv, tmp_path):
    proc = run_in(tmp_path, "-m", "sustain", *argv)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("sustain: error:") and "fix:" in proc.stderr
