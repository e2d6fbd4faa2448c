"""Fault injection for the resume tests: prove that a kill at any write never leaves a kept partial record.

With SUSTAIN_KILL_AT_WRITE=N in the environment, the Nth durable record write of this process
writes only half of its bytes, syncs them, and SIGKILLs the process: the worst moment to die.
Unset (always, outside tests) this costs one dict lookup per write.
"""
from __future__ import annotations

import os
import signal

_writes = 0


def before_write(fh, payload: str) -> None:
    global _writes
    target = os.environ.get("SUSTAIN_KILL_AT_WRITE")
    if not target:
        return
    _writes += 1
    if _writes == int(target):
        fh.write(payload[: max(1, len(payload) // 2)])
        fh.flush()
        os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
