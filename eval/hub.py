"""Hub look-ups that stay quiet when the hub cannot be reached.

huggingface_hub retries every unreachable request with backoff and logs each try (11-22 lines and
about a minute before the error). When one quick connection attempt shows the hub is unreachable,
the look-up runs in offline mode instead: the local cache still answers, and a miss fails at once,
with the caller's one-line error."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
_reachable: dict[str, bool] = {}  # one probe per host and process


def hub_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def offline_requested() -> bool:
    return any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable() -> bool:
    host, port = hub_host()
    if host not in _reachable:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                _reachable[host] = True
        except OSError:
            _reachable[host] = False
    return _reachable[host]


@contextlib.contextmanager
def quiet_hub(source: str | None = None):
    """Run hub look-ups offline when the hub is unreachable (local paths never probe); retry warnings are
    silenced either way."""
    from sustain.eval.model_check import looks_local

    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "huggingface_hub.utils._http", "datasets")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    go_offline = not offline_requested() and not (source and looks_local(source)) and not hub_reachable()
    patched = []
    try:
        if go_offline:
            import huggingface_hub.constants as hub_constants

            patched.append((hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE))
            hub_constants.HF_HUB_OFFLINE = True
            with contextlib.suppress(ImportError):
                import datasets.config as datasets_config

                patched.append((datasets_config, "HF_HUB_OFFLINE", datasets_config.HF_HUB_OFFLINE))
                datasets_config.HF_HUB_OFFLINE = True
        yield go_offline
    finally:
        for module, name, value in patched:
            setattr(module, name, value)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
