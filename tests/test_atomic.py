"""Atomic writes: a file under its final name is complete, and readable as the umask allows."""

from __future__ import annotations

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
