"""Atomic file writes: a file that exists under its final name is complete.

Writers produce a temporary sibling (same folder, so the rename stays on one filesystem) named
`.tmp-<final name>.<writer pid>.<random>` and rename it over the final name only after everything
was written and flushed. An output path that is a symlink is replaced by the new file, never
written through. A crash leaves at most a `.tmp-*` file, which readers ignore and the next run
removes (`remove_stale_temporaries`) once the process that wrote it is gone. A write that fails
(disk full, read-only folder) raises `OutputError` naming the final file, and leaves nothing.
A write into a folder a command claimed is listed in that folder's record before the rename
(`ownership`), so the next command knows the file is the project's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from virnucpro.errors import output_error
from virnucpro.files.layout import TMP_PREFIX
from virnucpro.files.ownership import UMASK, note_written


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this machine (an unfinished write may still be its)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_sibling(path: Path) -> Path:
    """A fresh, unused temporary path in the folder of `path` (the file is created empty)."""
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.{os.getpid()}.", dir=path.parent)
    os.close(fd)
    return Path(name)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the `.tmp-*` files of interrupted writes in `folder` (not recursive) whose writer is
    gone; a live writer's (a concurrent command) stay. Returns what was removed."""
    removed = []
    try:
        candidates = list(Path(folder).glob(f"{TMP_PREFIX}*"))
    except OSError:
        return removed
    for path in candidates:
        pid = _writer_pid(path.name)
        if pid is None or process_exists(pid) or not path.is_file() or path.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def is_temporary_name(name: str) -> bool:
    """Whether `name` is one of this module's temporary files (`.tmp-<name>.<pid>.<random>`)."""
    return _writer_pid(name) is not None


def _writer_pid(name: str) -> int | None:
    """The pid in `.tmp-<name>.<pid>.<random>`, or None for a name this module did not make."""
    parts = name.removeprefix(TMP_PREFIX).rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to `path`."""
    final = Path(path)
    try:
        tmp = temporary_sibling(final)
    except OSError as err:
        raise output_error(final, err) from None
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        note_written(final, tmp)
        os.replace(tmp, final)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise output_error(final, err) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces `path` only when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
