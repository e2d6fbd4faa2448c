"""GGUF files as a model source: dequantised once into an ordinary safetensors folder, then reused.

transformers (with the `gguf` package) dequantises a .gguf to float32 on load, but the loaded
model is flagged as quantised and `save_pretrained` refuses it; every stage here (generation,
attention, training, checkpoint evals) wants a plain folder. So a .gguf is converted once, under
$SUSTAIN_CACHE_DIR/gguf-hf/<name>-<content hash>/, by building the model from its config and
loading the dequantised weights; later loads read the folder (faster than dequantising again).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from sustain.eval.errors import UserError

SUFFIX = ".gguf"


def gguf_file(model: str) -> Path | None:
    """The .gguf a model argument names: the file itself, or the only .gguf in a folder without config.json."""
    path = Path(model).expanduser()
    if path.is_file() and path.name.endswith(SUFFIX):
        return path.resolve()
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob(f"*{SUFFIX}"))
        if len(found) > 1:
            raise UserError(f"model folder {path} holds {len(found)} .gguf files ({', '.join(p.name for p in found)})",
                            "pass the .gguf file itself: --model FOLDER/NAME.gguf")
        if found:
            return found[0].resolve()
    return None


def _cache_root() -> Path:
    base = os.environ.get("SUSTAIN_CACHE_DIR") or Path.home() / ".cache" / "sustain-suite"
    return Path(base) / "gguf-hf"


def _content_key(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def converted_folder(path: Path) -> Path:
    """The safetensors folder for this .gguf, converting it the first time (file-locked, atomic)."""
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{path.name[:-len(SUFFIX)]}-{_content_key(path)}"
    if (target / "config.json").is_file():
        return target
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once convert once
        if not (target / "config.json").is_file():
            tmp = root / f".{target.name}.part-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                _convert(path, tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            os.replace(tmp, target)
    return target


def _convert(path: Path, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UserError("reading a .gguf model needs the `gguf` package", "pip install gguf") from None
    kwargs = {"gguf_file": path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    except ValueError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "not supported" in first or "architecture" in first:
            raise UserError(f"transformers {transformers.__version__} cannot dequantise {path.name}: {first}",
                            "convert the model to a safetensors folder with its own tools, or use a Llama/Qwen2/Mistral-family GGUF") from None
        raise UserError(f"cannot read {path}: {first}", "check that the file is a complete GGUF model") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}", "check that the file is a complete GGUF model") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the flag that makes save_pretrained refuse
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    model.generation_config = loaded.generation_config
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
