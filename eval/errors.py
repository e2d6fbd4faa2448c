"""User mistakes are reported as one line that names the problem and the fix, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing data, unreachable endpoint).

    The message is one line: what is wrong, then how to fix it.
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)
