"""Atomic writes: a file under its final name is complete, and readable as the umask allows."""

from __future__ import annotations

import contextlib
import os

import pytest

from virnucpro.files.atomic import atomic_open


def test_finished_file_has_plain_open_permissions(tmp_path):
    with atomic_open(tmp_path / "result.txt") as handle:
        handle.write("done\n")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "result.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "result.txt").read_text() == "done\n"


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    (tmp_path / "result.txt").write_text("previous\n")
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "result.txt") as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]
    assert (tmp_path / "result.txt").read_text() == "previous\n"


def test_starting_a_folders_record_leaves_no_file_open(tmp_path):
    """A long-lived process (a notebook, the in-process test runner) keeps no descriptor per
    record: one left open kept a full disk's folder from being unmounted."""
    from virnucpro.files.ownership import Record

    def open_files() -> set[str]:
        names = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                names.add(os.readlink(f"/proc/self/fd/{fd}"))
        return names

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd to list open files")
    before = open_files()
    Record(tmp_path).create()
    assert (tmp_path / ".virnucpro-outputs").is_file()
    assert not {name for name in open_files() - before if str(tmp_path) in name}
