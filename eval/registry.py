"""Name registries ("name" -> "module:Class"), imported lazily so one entry's dependencies never slow another."""
from __future__ import annotations

import inspect
from importlib import import_module

from sustain.eval.errors import UserError


def build(registry: dict[str, str], name: str, kind: str, **options):
    """Construct the registered class for `name`; an unknown name or option is a one-line UserError."""
    if name not in registry:
        raise UserError(f"unknown {kind} {name!r}", f"use one of: {', '.join(sorted(registry))}")
    module, cls = registry[name].split(":")
    target = getattr(import_module(module), cls)
    try:
        inspect.signature(target).bind(**options)
    except TypeError as exc:  # an option the class does not take
        raise UserError(f"{kind} {name!r}: {exc}", f"check the {kind} options in your config") from None
    return target(**options)
