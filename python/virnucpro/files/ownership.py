"""Which files in an output folder are the project's: the folder's record, `.virnucpro-outputs`.

Every file a command writes into an output folder is listed in that folder's record with its size,
modification time and SHA-256. Only a regular file that matches an entry for its path (same size
and SHA-256) counts as the project's: a rerun, `--force` and `report` replace or remove those, and
refuse any other file at an output name, naming it. A record that is not ours (another format, no
signature line) makes the whole folder foreign: nothing there is replaced, not even the record.

The record is JSON lines: a signature line, then one line per file version written. A writer
appends the entry before it renames its finished temporary file into place (the rename keeps size,
modification time and bytes), so a crash between the two leaves an entry for a file that never
appeared, never a file of ours without an entry; earlier versions stay listed until the writer
that replaced them settles the record. Appends and rewrites take an flock on the record, so the
workers of one command and commands that share a folder (`embed-*`, `predict`) record side by side.
A file whose size and modification time match an entry is taken as that entry without being read
(a cache of hashes by size and mtime); one whose size alone matches is hashed, once per process.

Writes are recorded in the folders a command has claimed with `track` (absolute paths; the
deepest one that holds a file gets its entry); workers of a command get the same list.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from virnucpro.errors import InputError
from virnucpro.files.checksums import file_sha256
from virnucpro.files.layout import OUTDIR_MARKER, TMP_PREFIX

# mkstemp creates files readable by their owner only; finished files get the permissions a plain
# open() would give (0666 less the umask), so collaborators can read published results.
UMASK = os.umask(0o022)
os.umask(UMASK)

SIGNATURE = {"format": "virnucpro-output-record", "version": 1}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Folders whose writes are recorded, as absolute paths (see `track`).
_tracked: set[str] = set()
# SHA-256 of files already hashed in this process, by (path, device, inode, size, mtime_ns).
_hashed: dict[tuple, str] = {}


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    sha256: str

    def line(self, name: str) -> str:
        content = {"file": name, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")) + "\n"


def track(folder: str | os.PathLike[str]) -> None:
    """Record every atomic write under `folder` from now on, in `folder`'s record."""
    _tracked.add(os.path.abspath(folder))


def tracked() -> list[str]:
    """The folders whose writes are recorded (for worker processes of this command)."""
    return sorted(_tracked)


def track_all(folders: Iterable[str]) -> None:
    _tracked.update(folders)


def _root_of(path: Path) -> str | None:
    """The deepest tracked folder that holds `path`."""
    absolute = os.path.abspath(path)
    found = None
    for root in _tracked:
        if absolute.startswith(root.rstrip(os.sep) + os.sep) and (found is None or len(root) > len(found)):
            found = root
    return found


def entry_of(path: str | os.PathLike[str]) -> Entry:
    """Size, modification time and SHA-256 of a file as it is now (hashed once per process)."""
    status = os.stat(path)
    key = (os.path.abspath(path), status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    digest = _hashed.get(key)
    if digest is None:
        digest = _hashed[key] = file_sha256(path)
    return Entry(status.st_size, status.st_mtime_ns, digest)


def note_written(final: Path, written: Path) -> None:
    """Before `written` (finished, flushed) is renamed to `final`: list it in the record of the
    tracked folder that holds `final`, if any."""
    root = _root_of(final)
    if root is not None:
        record = Record(Path(root))
        record.append({record.name_of(final): entry_of(written)})


class Record:
    """The record of one output folder."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.path = self.folder / OUTDIR_MARKER

    def name_of(self, path: Path) -> str:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(self.folder))

    # --- reading ---

    def entries(self) -> dict[str, list[Entry]]:
        """Every recorded version of every file; an `InputError` when the record is not ours."""
        try:
            descriptor = _open_regular(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise InputError(f"{self.path}: cannot read the folder's record ({err.strerror})") from None
        try:
            return self._parse(_read_all(descriptor))
        finally:
            os.close(descriptor)

    def _parse(self, data: bytes) -> dict[str, list[Entry]]:
        lines = data.split(b"\n")
        try:
            signature = json.loads(lines[0])
        except (ValueError, RecursionError):
            signature = None
        if signature != SIGNATURE:
            raise InputError(
                f"{self.path}: not a record of virnucpro (its first line must be {json.dumps(SIGNATURE)}), so "
                f"{self.folder} is not a folder virnucpro wrote; refusing to write there: move "
                "that file or choose another --outdir"
            )
        found: dict[str, list[Entry]] = {}
        for line in lines[1:]:
            entry = _parse_entry(line)  # a torn or foreign line grants nothing
            if entry is not None:
                found.setdefault(entry[0], []).append(entry[1])
        return found

    def owns(self, path: Path, entries: dict[str, list[Entry]] | None = None) -> bool:
        """Whether `path` is a regular file that matches a recorded version: the same size and
        modification time (trusted without reading the file, as a hash cache would: a rerun over
        thousands of shards and score files reads none of them), else the same size and SHA-256."""
        entries = self.entries() if entries is None else entries
        versions = entries.get(self.name_of(path), [])
        try:
            status = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISREG(status.st_mode) or not any(v.size == status.st_size for v in versions):
            return False
        if any(v.size == status.st_size and v.mtime_ns == status.st_mtime_ns for v in versions):
            return True
        try:
            now = entry_of(path)
        except OSError:
            return False
        return any(v.size == now.size and v.sha256 == now.sha256 for v in versions)

    def refuse_foreign(self, paths: Iterable[Path], what: str) -> None:
        """Refuse (naming it) a file among `paths` that exists and is not ours: `what` is the
        command that would replace or remove it. A symlink is not refused (it is replaced by the
        new file; its target stays as it is); a folder always is."""
        entries = self.entries()
        for path in paths:
            try:
                status = os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise InputError(f"{path}: cannot check it ({err.strerror})") from None
            if stat.S_ISLNK(status.st_mode):
                continue
            if stat.S_ISDIR(status.st_mode):
                raise InputError(
                    f"{path}: a folder where {what} writes a file; refusing to touch it: move it or "
                    "choose another --outdir"
                )
            if not self.owns(path, entries):
                if self.name_of(path) in entries:
                    problem = f"was changed since virnucpro wrote it (it does not match {self.path})"
                elif os.path.lexists(self.path):
                    problem = f"exists and was not written by virnucpro (it is not in {self.path})"
                else:
                    problem = (
                        f"exists and was not written by virnucpro (no record of virnucpro in {self.folder})"
                    )
                raise InputError(
                    f"{path}: {problem}; refusing to overwrite or remove it: move it (or delete it) or choose "
                    "another --outdir"
                )

    def recorded_files(self) -> list[Path]:
        """Every path the record names (present or not)."""
        return [self.folder / name for name in self.entries()]

    # --- writing ---

    def create(self) -> None:
        """Start an empty record, unless one is there (the command checked it when it claimed the
        folder: it is not parsed again at every write)."""
        if os.path.lexists(self.path):
            return
        try:
            descriptor, name = tempfile.mkstemp(
                prefix=f"{TMP_PREFIX}{self.path.name}.{os.getpid()}.", dir=self.folder
            )
            os.close(descriptor)  # written by name below; left open, each record would leak one
            tmp = Path(name)
        except OSError as err:
            from virnucpro.errors import output_error

            raise output_error(self.path, err) from None
        try:
            tmp.write_text(json.dumps(SIGNATURE) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o666 & ~UMASK)
            with contextlib.suppress(FileExistsError):  # a concurrent command made it first
                os.link(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.entries()  # the one a concurrent command made first is ours too

    def append(self, entries: dict[str, Entry]) -> None:
        """Add entries (one write, under the record's lock)."""
        self.create()
        text = "".join(entry.line(name) for name, entry in entries.items()).encode("utf-8")
        with self._locked(os.O_WRONLY | os.O_APPEND) as descriptor:
            os.write(descriptor, text)
            os.fsync(descriptor)

    def settle(self, current: dict[str, Entry | None]) -> None:
        """Rewrite the record with one entry for each of these files (None: forget the file)."""
        if not os.path.lexists(self.path):
            return
        with self._locked(os.O_RDONLY) as descriptor:
            kept = self._parse(_read_all(descriptor))
            for name, entry in current.items():
                kept.pop(name, None)
                if entry is not None:
                    kept[name] = [entry]
            lines = [json.dumps(SIGNATURE) + "\n"]
            lines += [entry.line(name) for name, versions in kept.items() for entry in versions]
            fd, name = tempfile.mkstemp(
                prefix=f"{TMP_PREFIX}{self.path.name}.{os.getpid()}.", dir=self.folder
            )
            try:
                with open(fd, "w", encoding="utf-8") as out:
                    out.writelines(lines)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(name, 0o666 & ~UMASK)
                os.replace(name, self.path)
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise

    def forget(self, paths: Iterable[Path]) -> None:
        self.settle(dict.fromkeys((self.name_of(path) for path in paths), None))

    @contextlib.contextmanager
    def _locked(self, flags: int) -> Iterator[int]:
        """The record opened and flock'ed; reopened when a rewrite replaced it meanwhile."""
        while True:
            descriptor = _open_regular(self.path, flags)
            try:
                with contextlib.suppress(OSError):  # file systems without flock: unlocked
                    fcntl.flock(descriptor, fcntl.LOCK_EX)
                if os.fstat(descriptor).st_ino == os.lstat(self.path).st_ino:
                    yield descriptor
                    return
            except FileNotFoundError:
                pass
            finally:
                os.close(descriptor)


def _parse_entry(line: bytes) -> tuple[str, Entry] | None:
    try:
        content = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(content, dict):
        return None
    name, size, mtime, digest = (content.get(k) for k in ("file", "size", "mtime_ns", "sha256"))
    if (
        not isinstance(name, str)
        or not name
        or os.path.isabs(name)
        or ".." in Path(name).parts
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, mtime))
        or not isinstance(digest, str)
        or not _SHA256.match(digest)
    ):
        return None
    return name, Entry(size, mtime, digest)


def _open_regular(path: Path, flags: int) -> int:
    """The record opened without following a link or blocking on a FIFO; anything but a regular
    file there is not our record."""
    try:
        descriptor = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise
        descriptor = None
    if descriptor is not None and stat.S_ISREG(os.fstat(descriptor).st_mode):
        return descriptor
    if descriptor is not None:
        os.close(descriptor)
    raise InputError(
        f"{path}: not a regular file, so not a record of virnucpro: {path.parent} is not a folder "
        "virnucpro wrote; refusing to write there: move it or choose another --outdir"
    )


def _read_all(descriptor: int) -> bytes:
    os.lseek(descriptor, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(descriptor, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)
