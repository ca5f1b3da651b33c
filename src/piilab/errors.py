"""The one error type users see: a one-line message and exit code 2, never a traceback."""


class PiilabError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""

    exit_code = 2
