"""YAML -> dataclass configuration: unknown keys are errors naming the key and the valid ones."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sustain.eval.errors import UserError
from sustain.eval.generators import DEFAULT_BACKEND, ENDPOINT_BACKEND
from sustain.eval.tasks import DEFAULT_TASK

T = TypeVar("T")


def setting(default: Any, help: str) -> Any:
    """A config field with its help text (`sustain eval --help` shows it); list and dict defaults are
    copied for each instance."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class EvalConfig:
    """Everything one eval of one model needs; a YAML file and CLI flags fill it."""

    model: str = setting("", "a local checkpoint folder, a hub name, or the model name served at base_url")
    tasks: list[str] = setting([DEFAULT_TASK], "comma-separated task names or module:Class specs")
    out: str = setting("runs/eval", "the run folder (records, summary.json); rerun the same command to resume")
    backend: str = setting(DEFAULT_BACKEND, "a generation backend name or module:Class spec")
    base_url: str | None = setting(None, "an OpenAI-compatible endpoint, for the endpoint backend")
    api_key_env: str = setting("OPENAI_API_KEY", "the NAME of the variable holding the key, never the key")
    request_timeout_s: float = setting(120.0, "per HTTP request to an endpoint (model or soft-constraint LLM)")
    request_retries: int = setting(4, "retries with backoff on timeouts, 429 and 5xx")
    split: str = setting("test", "dataset split to evaluate")
    limit: int | None = setting(None, "items per task")
    data: dict[str, str] = setting({}, "task=path,...: a local JSONL/folder or hub name per task")
    families: list[str] = setting(["hard"], "constraint families: hard (rules, IFEval), soft (LLM)")
    categories: list[str] | None = setting(None, "restrict to these constraint categories")
    k_max: int = setting(1, "constraints per item, k = 1..k_max (the paper's scales analysis)")
    position: str = setting("append", "where the constraint goes: append | prepend | system")
    seed: int = setting(0, "fixes constraint choice and sampling")
    max_new_tokens: int = setting(4096, "per generation, baseline and constrained alike; long-CoT models need "
                                        "thousands (summary.json reports the truncation rate)")
    temperature: float = setting(0.0, "0 is greedy decoding")
    batch_size: int = setting(16, "prompts per generate call (and per record write)")
    dtype: str = setting("auto", "weights' dtype for backends that load the weights in-process: auto | float32 | bfloat16 | "
                                 "float16; bfloat16 on CPU generates faster but changes greedy outputs "
                                 "(benchmarks/README.md)")
    f1_threshold: float | None = setting(None, "QA tasks: token F1 >= this counts as solved; unset = exact match")
    sandbox_workers: int = setting(4, "parallel sandbox workers for code tasks")
    sandbox: str = setting("auto", "where model-written code runs: auto (= bwrap, bubblewrap) | bwrap | "
                                   "unshare (weaker: only when named)")
    soft_backend: str = setting(ENDPOINT_BACKEND, "the LLM that writes and judges soft constraints")
    soft_model: str | None = setting(None, "e.g. Qwen/Qwen3-32B served by vLLM, as in the paper")
    soft_base_url: str | None = setting(None, "its OpenAI-compatible endpoint")
    soft_max_new_tokens: int = setting(1024, "token budget of each extraction reply (a thinking model needs room)")
    soft_chat_template_kwargs: dict[str, str] = setting({}, "e.g. enable_thinking=false")
    judge_model: str | None = setting(None, "a separate self-evidence/follow judge; unset: the extractor judges")
    judge_backend: str | None = setting(None, "unset: soft_backend")
    judge_base_url: str | None = setting(None, "unset: soft_base_url")
    judge_max_new_tokens: int = setting(1024, "token budget of each judge reply")
    judge_chat_template_kwargs: dict[str, str] = setting({}, "e.g. enable_thinking=false")
    attention: bool = setting(False, "run the attention analysis stage (HF backend only)")
    attention_layers: list[int] | None = setting(None, "layers averaged in per_step (all when unset)")
    # Causal ablation (beyond the paper; HF backend only): regenerate failed constrained items with the
    # attention to the constraint scaled by ablation_factor, solved ones by ablation_control_factor.
    ablation: bool = setting(False, "run the causal ablation stage")
    ablation_factor: float = setting(0.0, "0 removes the constraint from attention, 1 changes nothing")
    ablation_control_factor: float = setting(4.0, "the reverse control on solved items")
    ablation_layers: list[int] | None = setting(None, "all layers when unset")
    ablation_after_step: int = setting(0, "leave the first N decoding steps untouched")
    ablation_limit: int | None = setting(None, "at most N generations per direction")

    # Settings that change records: a run folder made with other values is refused.
    IDENTITY = ("model", "backend", "base_url", "split", "seed", "max_new_tokens", "temperature", "position",
                "categories", "soft_model", "judge_model", "f1_threshold", "dtype")

    def identity(self) -> dict:
        return {k: getattr(self, k) for k in self.IDENTITY}


def template_options(options: dict) -> dict:
    """Chat-template options as typed values: "false" -> False, "2" -> 2 (CLI and YAML give text)."""
    return {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in (options or {}).items()}


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check a YAML/CLI value against a field's type hint; convert the obvious cases."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if value is None and not optional:
        raise UserError(f"config key {name!r} is null", f"give {name} a value, or leave the key out for its default")
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0])
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise UserError(f"config key {name!r} must be a list, got {value!r}", f"write {name}: [a, b]")
        return [_coerce(name, v, args[0]) for v in value]
    if origin is dict:
        if isinstance(value, str):  # CLI form: "a=x,b=y"
            try:
                value = dict(kv.split("=", 1) for kv in value.split(",") if kv)
            except ValueError:
                raise UserError(f"config key {name!r} expects key=value pairs, got {value!r}", f"write --{name} task=path") from None
        if not isinstance(value, dict):
            raise UserError(f"config key {name!r} must be a mapping, got {value!r}", f"write {name}: {{key: value}}")
        return {str(k): str(v) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise UserError(f"config key {name!r} must be true or false, got {value!r}", f"write {name}: true")
        return value
    if hint in (int, float):
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if hint is float or isinstance(value, float) else int(value)
            if not math.isfinite(number):
                raise UserError(f"config key {name!r} must be a finite number, got {value!r}", f"write {name}: 1")
            if hint is int and number != int(number):
                raise ValueError
            return hint(number)
        except (TypeError, ValueError, OverflowError):
            kind = " (a whole number)" if hint is int else ""
            raise UserError(f"config key {name!r} must be a number{kind}, got {_shown(value)}", f"write {name}: 1") from None
    if hint is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"config key {name!r} must be text, got {value!r}", f"write {name}: some-text")
        return str(value)
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
def unknown_key_error(key: str, valid: list[str], where: str, listing: str | None = None) -> UserError:
    """The one unknown-key message: the key, where it was, the closest valid keys, then all of them
    (or where they are listed, when there are too many to print)."""
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return UserError(f"unknown key {key!r} in {where}", f"{hint}{listing or 'valid keys: ' + ', '.join(valid)}")


def from_dict(cls: type[T], values: dict, source: str = "config") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are one-line errors."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise unknown_key_error(str(unknown[0]), names, source)
    return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """The one YAML loader: a mapping of keys to values, or a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}", "pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not valid YAML: {first}", "fix the syntax of that file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of keys to values", "write key: value lines")
    return data
