"""One command at a time per output folder: a second `virnucpro run`, `prepare` or `report` started
into a folder that another one is writing is refused in one line, instead of both rewriting the
same files.

The lock is flock on the folder's own descriptor, so no file is added to the user's folder, and the
kernel releases it however the process ends (kill -9 included). Locks are taken only inside
`folder_locks()`, which the CLI holds around each command: a library caller decides its own
concurrency, and a long-lived process (a notebook, a test session) keeps no folder locked after a
call. Where the file system does not support flock (some network mounts) folders are used unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from virnucpro.errors import InputError

# Folders locked by the running command, by (device, inode): descriptor. None outside folder_locks().
_held: dict[tuple[int, int], int] | None = None


@contextlib.contextmanager
def folder_locks() -> Iterator[None]:
    """Take folder locks inside this block (one CLI command); release them all at its end."""
    global _held
    _held = {}
    try:
        yield
    finally:
        held, _held = _held, None
        for descriptor in held.values():
            os.close(descriptor)


def lock_folder(folder: Path) -> None:
    """Lock `folder` until the command ends, or refuse in one line when another process holds it."""
    if _held is None:
        return
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    status = os.fstat(descriptor)
    key = (status.st_dev, status.st_ino)
    if key in _held:
        os.close(descriptor)
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(descriptor)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise InputError(
                f"{folder}: another virnucpro command is writing this folder now; wait for it to "
                "finish or choose another --outdir"
            ) from None
        return  # no flock here: unlocked, as before
    _held[key] = descriptor
