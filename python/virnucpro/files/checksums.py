"""SHA-256 of files: how the pipeline identifies an input, a shard, an embedding file or a weights
file by its content.

Hashing a file anew on every rerun costs a read of it; `HashCache` keeps each hash with the file's
size, modification time, change time and inode, in a table of the run's work folder, and hashes
again when any of them changed. The change time is what a user cannot put back: a file edited in
place with its size kept and its modification time restored (`touch -r`) is hashed again.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import BinaryIO

_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class HashingReader(io.RawIOBase):
    """A read-only binary stream that hashes every byte read through it, so a file is identified by
    its content in the same pass that parses it (pipes and standard input included: no seeking)."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._raw = raw
        self._digest = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer)
        if count:
            self._digest.update(memoryview(buffer)[:count])
            self.bytes_read += count
        return count or 0

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        self._raw.close()
        super().close()
