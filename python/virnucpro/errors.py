"""Errors a user can act on. The CLI prints them as one line and exits with their code; anything
else is a bug: one line too ("internal error"), with its traceback in a crash log."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence


class VirNucProError(Exception):
    """A failure with a message meant for the user (no traceback)."""

    exit_code = 1


class InputError(VirNucProError):
    """Bad input or arguments: the message names the file, the record and the problem."""

    exit_code = 2


class InternalError(Exception):
    """A bug met in another process (an embedding worker): its traceback travels as text, for the
    crash log of the command."""

    def __init__(self, message: str, details: str):
        super().__init__(message)
        self.details = details


class Terminated(BaseException):
    """SIGTERM or SIGHUP (a scheduler's time limit, `kill PID`, a closed terminal), raised in the main
    thread so that the cleanup of Ctrl-C runs: workers stopped, finished files kept, one line.
    Not an Exception, so that no `except Exception` takes it for a failure to report."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class OutputError(VirNucProError):
    """An output could not be written (disk full, read-only or unwritable folder): names the file."""

    exit_code = 1


_HINTS = {
    errno.ENOSPC: "free space or choose another --outdir, then rerun to resume",
    errno.EDQUOT: "free space or choose another --outdir, then rerun to resume",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or choose another --outdir",
    errno.EROFS: "choose another --outdir",
    errno.EACCES: "choose a folder you may write to",
    errno.EPERM: "choose a folder you may write to",
}


def describe_os_error(err: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One line for an operating-system error: the file, what went wrong, and what to do."""
    where = path if path is not None else err.filename
    code = err.errno
    if code is None:  # pyarrow's OSErrors carry the number only in their text
        found = re.search(r"\[errno (\d+)\]", str(err))
        code = int(found.group(1)) if found else None
    # The system's own words for the number (pyarrow's strerror wraps them in more text).
    problem = os.strerror(code) if code else (err.strerror or str(err) or type(err).__name__)
    hint = _HINTS.get(code or 0)
    text = f"{problem} ({hint})" if hint else problem
    return f"{where}: {text}" if where is not None else text


def output_error(path: str | os.PathLike[str], err: OSError) -> OutputError:
    """The `OutputError` for a failed write of `path`."""
    return OutputError(f"cannot write {describe_os_error(err, path)}")


# The output folder of the running command, once it was found usable: where its crash log goes.
_output_folder: list[str] = []


def note_output_folder(folder: str | os.PathLike[str]) -> None:
    """Remember the command's output folder (the first one it checked: nested stages write inside
    it) for a crash log."""
    if not _output_folder:
        _output_folder.append(os.path.abspath(folder))


def noted_output_folder() -> str | None:
    """The output folder `note_output_folder` remembered, or None."""
    return _output_folder[0] if _output_folder else None


def abbreviated_ids(ids: Sequence[str], shown: int = 5) -> str:
    """The first `shown` ids, for an error message: "a, b, c, d, e and 12 more"."""
    text = ", ".join(ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
