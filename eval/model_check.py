"""A local model folder checked before anything is claimed or loaded: readable, a valid config.json
with a model_type this transformers knows, a tokenizer that parses, weights present and whole, and a
PEFT adapter's base model reachable. Each problem is one line naming the real cause; loading the
weights later can then only fail for reasons these cheap checks cannot see."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from sustain.eval.errors import UserError, os_error

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).expanduser().exists()


def check_model_source(model: str, layers: list[int] = ()) -> str:
    """The absolute folder path of a local model (checked), or a hub name unchanged. A .gguf (or a folder
    holding one) is converted once to such a folder (generators/gguf.py)."""
    from sustain.eval.generators.gguf import converted_folder, gguf_file

    gguf = gguf_file(model)
    if gguf is not None:
        return str(converted_folder(gguf))
    path = Path(model).expanduser()
    if not path.exists():
        if looks_local(model):
            blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
            where = f" ({blocker} is a file, not a folder)" if blocker else ""
            raise UserError(f"model folder not found: {model}{where}", "pass an existing model folder or a hub name")
        return model
    if not path.is_dir():
        raise UserError(f"model path is not a folder: {path}", "pass the folder that holds config.json and the weights")
    if not os.access(path, os.R_OK | os.X_OK):
        raise os_error("read model folder", path, PermissionError(13, "Permission denied"))
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as exc:
        raise os_error("read model folder", path, exc) from None
    if "adapter_config.json" in names:
        check_adapter(path)
        return str(path.resolve())
    if "config.json" not in names:
        raise UserError(f"no config.json in model folder {path}", "pass a folder written by save_pretrained or a checkpoint-N folder")
    weights = sorted(n for n in names if n.endswith(WEIGHT_SUFFIXES))
    if not weights:
        raise UserError(
            f"model folder {path} has no weights (no *.safetensors or *.bin files)",
            "point at a checkpoint saved with its weights, or re-run save_pretrained(model) into it",
        )
    config = read_json(path / "config.json", "config.json")
    check_model_type(path, config)
    check_tokenizer(path, names)
    for name in weights:
        if name.endswith(".safetensors"):
            check_safetensors(path / name)
    check_layers(path, config, layers)
    return str(path.resolve())


def read_json(path: Path, what: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise os_error("read", path, exc) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a valid JSON file ({type(exc).__name__}; the {what} is corrupt or cut short)",
                        "restore it from the original checkpoint, or re-save the model with save_pretrained") from None


def check_model_type(folder: Path, config) -> None:
    if not isinstance(config, dict):
        raise UserError(f"{folder / 'config.json'} is not a JSON object", "restore it from the original checkpoint")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(f"{folder / 'config.json'} has no model_type", "restore it from the original checkpoint")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING_NAMES and not config.get("auto_map"):
        import transformers

        raise UserError(f"{folder / 'config.json'} has model_type {model_type!r}, unknown to transformers {transformers.__version__}",
                        "fix model_type, or upgrade transformers to a version that knows that architecture")


def check_tokenizer(folder: Path, names: set[str]) -> None:
    if not any(n in names for n in TOKENIZER_FILES):
        raise UserError(f"model folder {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})",
                        "save the tokenizer into the folder too (tokenizer.save_pretrained(folder))")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if name in names:
            data = read_json(folder / name, name.replace(".json", "").replace("_", " "))
            if not isinstance(data, dict):
                raise UserError(f"{folder / name} is not a JSON object (the tokenizer is corrupt)",
                                "restore it, or save the tokenizer again with tokenizer.save_pretrained(folder)")


def check_safetensors(path: Path) -> None:
    """The header of a .safetensors file and the byte length it promises (catches a cut-short copy)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
            header = json.loads(fh.read(n)) if n is not None and 0 < n <= min(size, 100 << 20) else None
    except OSError as exc:
        raise os_error("read", path, exc) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2] if isinstance(header, dict) else None
    if ends is None or 8 + n + max(ends, default=0) > size:
        raise UserError(f"cannot load model folder {path.parent}: {path.name} is incomplete or corrupt (incomplete metadata or cut short)",
                        "copy the weights again from a complete checkpoint")


def check_layers(folder: Path, config: dict, layers: list[int]) -> None:
    n = config.get("num_hidden_layers", (config.get("text_config") or {}).get("num_hidden_layers"))
    bad = [layer for layer in layers if isinstance(n, int) and layer >= n]
    if bad:
        raise UserError(f"layer {bad[0]} does not exist: {folder} has {n} layers (0..{n - 1})",
                        f"pass layers between 0 and {n - 1}")


def check_adapter(folder: Path) -> None:
    """A PEFT adapter loads its base model from the path it recorded: that base must exist."""
    config = read_json(folder / "adapter_config.json", "adapter config")
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise UserError(f"{folder / 'adapter_config.json'} names no base model", "set base_model_name_or_path in it")
    if not Path(base).expanduser().exists() and looks_local(base):
        raise UserError(f"adapter {folder} needs its base model {base}, which does not exist",
                        "restore the base model at that path, or edit base_model_name_or_path in adapter_config.json")
    if Path(base).expanduser().is_dir():
        check_model_source(base)
