"""User mistakes are reported as one line that names the problem and the fix, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing data, unreachable endpoint).

    The message is one line: what is wrong, then how to fix it.
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)


def argument_parser(**kwargs):
    """An argparse parser whose mistakes are UserErrors (one line with a fix), not usage dumps."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            raise UserError(f"{self.prog}: {message}", f"see `{self.prog} --help` for the valid arguments")

    return Parser(**kwargs)


def one_line(text: str, limit: int = 500) -> str:
    """A message as one printable line: newlines folded, a huge echoed input cut."""
    text = " ".join(text.split())
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates from undecodable paths
    return text if len(text) <= limit else text[: limit - 3] + "..."


def os_error(action: str, path, exc: OSError, flag: str | None = None) -> UserError:
    """An OSError on `path` as a UserError naming its real cause (permissions, a full disk, a path
    under a file, a read-only file system) and the fix for that cause."""
    import errno
    from pathlib import Path

    path = Path(path)
    code = exc.errno
    other = f" or choose another {flag}" if flag else ""
    if code in (errno.EACCES, errno.EPERM):
        return UserError(f"cannot {action} {path}: permission denied",
                         f"give your user access to it (chmod/chown){other}")
    if code == errno.EROFS:
        return UserError(f"cannot {action} {path}: the file system is read-only", f"use a writable location{other}")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"cannot {action} {path}: no space left on the device", f"free disk space{other}")
    if code == errno.ENOTDIR:
        blocker = next((p for p in [path, *path.parents] if p.is_file()), None)
        where = f"{blocker} is a file, not a folder" if blocker else "a part of the path is not a folder"
        return UserError(f"cannot {action} {path}: {where}", f"use a path whose parents are folders{other}")
    if code == errno.EISDIR:
        return UserError(f"cannot {action} {path}: it is a folder", f"remove that folder{other}")
    if code == errno.ENOENT:
        return UserError(f"cannot {action} {path}: it does not exist", f"check the path{other}")
    if code == errno.ENAMETOOLONG:
        return UserError(f"cannot {action} {str(path)[:120]}...: the name is too long", f"use a shorter path{other}")
    return UserError(f"cannot {action} {path}: {exc.strerror or exc}", f"check that path{other}")


def _flush_stdout() -> UserError | None:
    """Flush stdout now (not at exit, where a full device prints a traceback Python cannot catch)."""
    import os
    import sys

    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        try:  # what is still buffered cannot be written: drop it so the exit does not retry
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        if isinstance(exc, BrokenPipeError):
            return None  # `sustain ... | head`: the reader left, not a user mistake
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return UserError(f"cannot write to standard output: {reason}", "redirect the output to a file on a device with space")
    return None


def run_entry(fn, *args) -> int:
    """Run a command; a UserError ends it as one line on stderr and status 2 (SUSTAIN_DEBUG=1 shows the
    traceback behind it), Ctrl-C as status 130 with the records kept."""
    import errno
    import os
    import sys

    try:
        result = fn(*args)
        problem = _flush_stdout()
        if problem is not None:
            raise problem
    except UserError as exc:
        if os.environ.get("SUSTAIN_DEBUG") == "1":
            raise
        print(f"sustain: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # printing to a full or closed stdout mid-command
        if exc.errno not in (errno.ENOSPC, errno.EPIPE, errno.EIO) or os.environ.get("SUSTAIN_DEBUG") == "1":
            raise
        _flush_stdout()
        if exc.errno == errno.EPIPE:
            return 0
        where = exc.filename or "standard output"
        print(f"sustain: error: cannot write {where}: {exc.strerror} (fix: free disk space or write to another device)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sustain: interrupted; records so far are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
