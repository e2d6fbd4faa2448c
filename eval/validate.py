"""Every eval setting checked before any work: names, ranges, finiteness, and sizes that would never
finish. `validate_eval_config` returns the settings normalised (duplicates dropped, a local model
folder made absolute) so the same run always has the same identity. The sustain CLI, the pipeline
and the training recipes all go through it, so a mistake is refused at the edge, before a run
folder is claimed or a training step is taken."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from sustain.eval.config import EvalConfig
from sustain.eval.errors import UserError

# Limits far above any real use that still finish: beyond them a run would hang or exhaust memory.
MAX_K = 64  # constraints in one prompt
MAX_ITEMS = 1_000_000  # items per task
MAX_NEW_TOKENS = 1 << 20
MAX_BATCH = 1 << 16
MAX_WORKERS = 512
MAX_RETRIES = 100
MAX_TIMEOUT_S = 86_400.0
MAX_TEMPERATURE = 100.0
MAX_SEED = 2**32 - 1  # numpy and torch generators take 32-bit seeds
POSITIONS = ("append", "prepend", "system")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unique(values):
    """Order kept, repeats dropped: `--families hard,hard` is one family, not a run stored twice."""
    return list(dict.fromkeys(values)) if values is not None else None


def check_range(name: str, value, lo=None, hi=None, flag: str | None = None) -> None:
    flag = flag or "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value}", f"pass {flag} with a number")
    if lo is not None and value < lo:
        raise UserError(f"{name} must be >= {lo}, got {value}", f"pass {flag} {lo} or more")
    if hi is not None and value > hi:
        raise UserError(f"{name} must be <= {hi}, got {value} (a run this size would not finish)",
                        f"pass {flag} {hi} or less")


def check_text(name: str, value: str | None, flag: str | None = None, what: str = "a value") -> None:
    """Set, not blank, not the text of a YAML null, and valid UTF-8 (an undecodable path under an ASCII
    locale arrives with lone surrogates that no file can store)."""
    flag = flag or "--" + name.replace("_", "-")
    if value is None or not str(value).strip() or str(value).strip() in ("None", "null", "~"):
        raise UserError(f"no {name} given: it is empty or null ({value!r})", f"pass {flag} {what}")
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{name} {value.encode('utf-8', 'backslashreplace').decode()!r} is not valid text in this locale",
                        "rename it to UTF-8, or run with LANG=C.UTF-8 so the name can be decoded") from None


def check_url(name: str, url: str | None) -> None:
    flag = "--" + name.replace("_", "-")
    if not url:
        raise UserError(f"{name} is not set", f"pass {flag} http://host:port/v1")
    if not str(url).startswith(("http://", "https://")):
        raise UserError(f"{name} {url!r} is not an http(s) URL", f"pass e.g. {flag} http://localhost:8000/v1")


def takes_url(backend: type) -> bool:
    """An endpoint backend: its constructor takes the server's base_url."""
    import inspect

    return "base_url" in inspect.signature(backend).parameters


def validate_eval_config(cfg: EvalConfig, check_model: bool = True) -> EvalConfig:
    """The settings checked and normalised; check_model=False for a recipe whose model does not exist yet."""
    from sustain.eval import constraints as C
    from sustain.eval.generators import DEFAULT_BACKEND, backend_class
    from sustain.eval.tasks import TASKS, task_class

    check_text("out", cfg.out, what="FOLDER")
    check_text("split", cfg.split, what="test")
    if check_model:
        check_text("model", cfg.model, what="PATH_OR_NAME")
    tasks = unique(cfg.tasks)
    if not tasks:
        raise UserError("no tasks given", f"pass --tasks with some of: {', '.join(TASKS)}")
    for name in tasks:
        task_class(name)  # a registered name or an importable module:Class
    for name, source in cfg.data.items():
        if name not in tasks and name not in TASKS:
            raise UserError(f"--data names unknown task {name!r}", f"use task=path with a task of: {', '.join(sorted(TASKS))}")
        check_text(f"data for {name}", source, flag="--data", what=f"{name}=PATH")
    families = unique(cfg.families)
    if not families:
        raise UserError("no constraint families given", f"pass --families with some of: {', '.join(C.FAMILIES)}")
    for family in families:
        if family not in C.FAMILIES:
            raise UserError(f"unknown constraint family {family!r}", f"use: {', '.join(C.FAMILIES)}")
    categories = unique(cfg.categories)
    for category in categories or []:
        C.check_category(category)
    backend = backend_class(cfg.backend)
    if takes_url(backend):
        check_url("base_url", cfg.base_url)
    if "soft" in families:
        if not cfg.soft_model:
            raise UserError("soft constraints need an LLM", "pass --soft-model NAME (and --soft-base-url for an endpoint)")
        if takes_url(backend_class(cfg.soft_backend)):
            check_url("soft_base_url", cfg.soft_base_url)
        check_range("soft_max_new_tokens", cfg.soft_max_new_tokens, 1, MAX_NEW_TOKENS)
        check_range("judge_max_new_tokens", cfg.judge_max_new_tokens, 1, MAX_NEW_TOKENS)
        if cfg.judge_backend:
            backend_class(cfg.judge_backend)
    from sustain.eval.sandbox.isolation import SETTINGS as SANDBOX_SETTINGS

    if cfg.sandbox not in SANDBOX_SETTINGS:  # checked even when no task runs code: a typo is never ignored
        raise UserError(f"unknown sandbox setting {cfg.sandbox!r}", f"use one of: {', '.join(SANDBOX_SETTINGS)}")
    if cfg.f1_threshold is not None and not 0 < cfg.f1_threshold <= 1:
        raise UserError(f"f1_threshold must be in (0, 1], got {cfg.f1_threshold}", "use e.g. 0.5, or leave it unset for exact match")
    if not ENV_NAME_RE.fullmatch(cfg.api_key_env or ""):
        raise UserError("api_key_env must be the NAME of an environment variable, not a key",
                        "pass e.g. --api-key-env OPENAI_API_KEY and export the key in that variable")
    if cfg.position not in POSITIONS:
        raise UserError(f"unknown constraint position {cfg.position!r}", f"use one of: {', '.join(POSITIONS)}")
    check_range("k_max", cfg.k_max, 1, MAX_K)
    if cfg.limit is not None:
        check_range("limit", cfg.limit, 0, MAX_ITEMS)
    check_range("max_new_tokens", cfg.max_new_tokens, 1, MAX_NEW_TOKENS)
    check_range("temperature", cfg.temperature, 0.0, MAX_TEMPERATURE)
    check_range("seed", cfg.seed, 0, MAX_SEED)
    check_range("batch_size", cfg.batch_size, 1, MAX_BATCH)
    check_range("sandbox_workers", cfg.sandbox_workers, 1, MAX_WORKERS)
    check_range("request_timeout_s", cfg.request_timeout_s, 0.001, MAX_TIMEOUT_S)
    check_range("request_retries", cfg.request_retries, 0, MAX_RETRIES)
    check_range("ablation_factor", cfg.ablation_factor, 0.0, 1e6)
    check_range("ablation_control_factor", cfg.ablation_control_factor, 0.0, 1e6)
    check_range("ablation_after_step", cfg.ablation_after_step, 0, MAX_NEW_TOKENS)
    if cfg.ablation_limit is not None:
        check_range("ablation_limit", cfg.ablation_limit, 0, MAX_ITEMS)
    attention_layers, ablation_layers = unique(cfg.attention_layers), unique(cfg.ablation_layers)
    for name, layers in (("attention_layers", attention_layers), ("ablation_layers", ablation_layers)):
        for layer in layers or []:
            check_range(name, layer, 0, None)
    local = getattr(backend, "local_weights", False)
    if (cfg.attention or cfg.ablation) and not local:
        raise UserError(f"attention and ablation need the model's weights, not the {cfg.backend!r} backend",
                        f"use --backend {DEFAULT_BACKEND}, or drop --attention/--ablation")
    model = cfg.model
    if check_model and local:
        from sustain.eval.model_check import check_model_source

        model = check_model_source(cfg.model, layers=[*(attention_layers or []), *(ablation_layers or [])])
    return dataclasses.replace(cfg, model=model, tasks=tasks, families=families, categories=categories,
                               attention_layers=attention_layers, ablation_layers=ablation_layers)


def out_folder_problem(out: str | Path) -> None:
    """--out must be a folder we can create or write: refused before anything is claimed."""
    from sustain.eval.errors import os_error

    path = Path(out)
    blocker = next((p for p in [path, *path.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "it is a file" if blocker == path else f"{blocker} is a file, not a folder"
        raise UserError(f"cannot write run folder {path}: {where}", "choose another --out")
    import os

    if blocker is not None and not os.access(blocker, os.W_OK | os.X_OK):
        raise os_error("write", blocker, PermissionError(13, "Permission denied"), flag="--out")
