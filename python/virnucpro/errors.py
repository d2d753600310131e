"""Errors a user can act on. The CLI prints them as one line and exits with their code; anything
else is a bug and keeps its traceback."""


class VirNucProError(Exception):
    """A failure with a message meant for the user (no traceback)."""

    exit_code = 1


class InputError(VirNucProError):
    """Bad input or arguments: the message names the file, the record and the problem."""

    exit_code = 2
