"""The one error type users see for bad input: its message names the file and the problem."""


class ClccError(Exception):
    """Bad input or configuration; the CLI prints the message without a traceback."""
