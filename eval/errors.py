"""User mistakes are reported as one line that names the problem and the fix, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing data, unreachable endpoint).

    The message is one line: what is wrong, then how to fix it.
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)


def run_entry(fn, *args) -> int:
    """Run a command; a UserError ends it as one line on stderr and status 2 (SUSTAIN_DEBUG=1 shows the
    traceback behind it), Ctrl-C as status 130 with the records kept."""
    import os
    import sys

    try:
        result = fn(*args)
    except UserError as exc:
        if os.environ.get("SUSTAIN_DEBUG") == "1":
            raise
        print(f"sustain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sustain: interrupted; records so far are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
