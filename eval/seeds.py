"""Seeds derived from names, the same in every process (Python's hash() is randomised per process)."""
from __future__ import annotations

import hashlib


def stable_seed(*parts) -> int:
    """A 32-bit seed that depends only on its parts."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)
