"""Name registries ("name" -> "module:Class"), imported lazily so one entry's dependencies never slow another.

Anything that takes a registered name also takes a "module:Class" spec (e.g. `--tasks mypkg.tasks:MyTask`,
`backend: mypkg.gen:MyGenerator`), so a task or backend can live outside this package.
"""
from __future__ import annotations

import inspect
from importlib import import_module

from sustain.eval.errors import UserError


def is_spec(name: str) -> bool:
    """True for a "module:Class" spec rather than a registered name."""
    return ":" in name


def resolve(registry: dict[str, str], name: str, kind: str, base: type | None = None) -> type:
    """The class a registered name or a "module:Class" spec stands for; anything else is a UserError."""
    if name in registry:
        spec = registry[name]
    elif is_spec(name):
        spec = name
    else:
        raise UserError(f"unknown {kind} {name!r}", f"use one of: {', '.join(sorted(registry))} (or module:Class)")
    module, _, cls = spec.partition(":")
    try:
        target = getattr(import_module(module), cls)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):  # the module itself, not one it imports
            raise UserError(f"{kind} {name!r}: no module named {module!r}",
                            "install it or put its folder on PYTHONPATH") from None
        raise
    except AttributeError:
        raise UserError(f"{kind} {name!r}: module {module!r} has no {cls!r}", "check the class name after the colon") from None
    if base is not None and not (inspect.isclass(target) and issubclass(target, base)):
        raise UserError(f"{kind} {name!r} is not a {base.__name__} subclass", f"derive {cls} from {base.__module__}.{base.__name__}")
    return target


def build(registry: dict[str, str], name: str, kind: str, base: type | None = None, **options):
    """Construct the class for `name`; an unknown name or option is a one-line UserError."""
    target = resolve(registry, name, kind, base)
    try:
        inspect.signature(target).bind(**options)
    except TypeError as exc:  # an option the class does not take
        raise UserError(f"{kind} {name!r}: {exc}", f"check the {kind} options in your config") from None
    return target(**options)


def accepted(target: type, offered: dict) -> dict:
    """The offered options the class's constructor takes: a class declares the run-wide settings it
    wants by naming them as parameters."""
    params = inspect.signature(target).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(offered)
    return {k: v for k, v in offered.items() if k in params}
