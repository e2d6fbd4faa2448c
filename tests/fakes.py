"""Test doubles shared by several test files."""
from sustain.eval.generators import Generator


class NoCalls(Generator):
    """A generator that fails the test if anything asks it to generate (a rerun must not)."""

    model_id = "no-calls"

    def generate(self, conversations, cfg):
        raise AssertionError("a rerun of a finished run generated again")
