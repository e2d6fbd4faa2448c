"""Run model-written code safely: isolated, resource-limited processes with an unforgeable verdict.

    from sustain.eval.sandbox import Program, Sandbox
    with Sandbox(workers=2, timeout_s=10) as box:
        [result] = box.run([Program(code=prompt + completion, test=test, entry_point="add")])
        result.passed, result.reason

Layout: pool.py (evaluator side: workers, dispatch, restarts), isolation.py (the modes: bwrap, or
unshare only when named; never a silent downgrade), view.py (the file system a program sees, the
same in every mode), mount_view.py (unshare mode's set-up), syscall_filter.py (seccomp), worker.py
(the fork-server, pid 1 inside the sandbox), harness.py (the program host and the test runner, and
why the verdict cannot be forged).
"""
from sustain.eval.sandbox.isolation import resolve_mode
from sustain.eval.sandbox.pool import Program, Result, Sandbox

__all__ = ["Program", "Result", "Sandbox", "resolve_mode"]
