"""The two kinds of failure a command reports: bad input (exit 2) and runtime failure (exit 1).

Library code raises these with one plain sentence naming the file or option and the problem;
the CLI entry point prints that sentence and exits with the class's code, never a traceback
(unless `--debug`).
"""


class CcliError(Exception):
    """A runtime failure: the input was acceptable but the work could not be done."""

    exit_code = 1


class BadInput(CcliError):
    """The user gave a file, option or value that cannot be used."""

    exit_code = 2
