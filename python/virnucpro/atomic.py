"""Atomic file writes: a file that exists under its final name is complete.

Writers produce a temporary sibling (same folder, so the rename stays on one filesystem) and rename
it over the final name only after everything was written and flushed. A crash leaves at most a
`.tmp-*` file, which readers ignore and the next write replaces.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_PREFIX = ".tmp-"
# mkstemp creates files readable by their owner only; finished files get the permissions a plain
# open() would give (0666 less the umask), so collaborators can read published results.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def temporary_sibling(path: Path) -> Path:
    """A fresh, unused temporary path in the folder of `path` (the file is created empty)."""
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to `path`."""
    final = Path(path)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces `path` only when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
