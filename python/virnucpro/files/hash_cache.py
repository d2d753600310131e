"""A table of files' SHA-256 remembered by path, size, modification and change time and inode, so that
a rerun hashes only the files that changed (`virnucpro run` keeps one in its output folder)."""

from __future__ import annotations

import os
from pathlib import Path

from virnucpro.files.atomic import atomic_open
from virnucpro.files.checksums import file_sha256


class HashCache:
    """SHA-256 of files, remembered by resolved path with (size, mtime_ns, ctime_ns, inode).

    `path` is the table (tab-separated: sha256, size, mtime_ns, ctime_ns, inode, path), read when the cache
    is made and written by `save` (atomically); None keeps the cache in memory only. A table that
    cannot be read, or a line that does not parse, is ignored: it only costs hashing again."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, tuple[str, int, int, int, int]] = {}
        self.changed = False
        if self.path is not None:
            self.entries = parse_hash_table(self.path)

    def sha256(self, file: str | os.PathLike[str]) -> str:
        resolved = str(Path(file).resolve())
        stat = os.stat(resolved)
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        known = self.entries.get(resolved)
        if known is not None and known[1:] == key:
            return known[0]
        digest = file_sha256(resolved)
        if os.stat(resolved).st_ctime_ns == stat.st_ctime_ns:  # not changed while it was read
            self.entries[resolved] = (digest, *key)
            self.changed = True
        return digest

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        with atomic_open(self.path, "w", encoding="utf-8", newline="\n") as out:
            for file, (digest, *numbers) in sorted(self.entries.items()):
                out.write("\t".join([digest, *map(str, numbers), file]) + "\n")
        self.changed = False


_HEX = frozenset("0123456789abcdef")


def parse_hash_table(path: Path) -> dict[str, tuple[str, int, int, int, int]]:
    """The entries of a hash table file; unreadable files and malformed lines are skipped."""
    entries: dict[str, tuple[str, int, int, int, int]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return entries
    for line in text.split("\n"):
        parts = line.split("\t", 5)
        if len(parts) != 6 or len(parts[0]) != 64 or not set(parts[0]) <= _HEX or not parts[5]:
            continue
        try:
            numbers = tuple(int(p) for p in parts[1:5])
        except ValueError:
            continue
        if min(numbers) < 0:
            continue
        entries[parts[5]] = (parts[0], *numbers)
    return entries
