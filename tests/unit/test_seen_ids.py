"""Duplicate ids in bounded memory: ids of earlier batches are kept as 64-bit hashes, a hash found
again is checked against the input itself (a collision is not a duplicate), and streams keep their
ids whole. Through the real reader, with small batches so that every path runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import cli_env
from virnucpro.errors import InputError
from virnucpro.files.sequences import SeenIds, read_sequences


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(SeenIds, "BATCH", 4)


def fasta(path, ids):
    path.write_text("".join(f">{i} some header\nACGTACGT\n" for i in ids))
    return path


def test_a_duplicate_batches_apart_is_named_with_its_record(tmp_path, small_batches):
    reads = fasta(tmp_path / "reads.fa", [f"r{i}" for i in range(30)] + ["r3"] + [f"s{i}" for i in range(9)])
    with pytest.raises(
        InputError, match=r"reads.fa: record 31 \(r3\): duplicate sequence id \(ids must be unique\)"
    ):
        list(read_sequences(reads))


def test_a_duplicate_across_files_names_the_other_file(tmp_path, small_batches):
    first = fasta(tmp_path / "a.fa", [f"r{i}" for i in range(13)])
    second = fasta(tmp_path / "b.fa", [f"s{i}" for i in range(10)] + ["r5"])
    with pytest.raises(InputError, match=r"b.fa: record 11 \(r5\): duplicate sequence id: also in .*a.fa"):
        list(read_sequences([first, second]))


def test_hash_collisions_are_checked_against_the_input(tmp_path, small_batches, monkeypatch):
    # Every id hashes alike: each batch meets "its" hash again and the input is read to see.
    monkeypatch.setattr(SeenIds, "hash", staticmethod(lambda seq_id: 7))
    reads = fasta(tmp_path / "reads.fa", [f"r{i}" for i in range(25)])
    assert [r.id for r in read_sequences(reads)] == [f"r{i}" for i in range(25)]
    with_duplicate = fasta(tmp_path / "dup.fa", [f"r{i}" for i in range(25)] + ["r24", "x"])
    with pytest.raises(InputError, match=r"record 26 \(r24\): duplicate"):
        list(read_sequences(with_duplicate))


def test_standard_input_keeps_its_ids_whole(tmp_path):
    text = "".join(f">r{i}\nACGT\n" for i in range(5)) + ">r2\nACGT\n"
    result = subprocess.run(
        [sys.executable, "-m", "virnucpro", "prepare", "-", "--outdir", str(tmp_path / "out")],
        input=text, capture_output=True, text=True, env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 2
    assert "standard input: record 6 (r2): duplicate sequence id (ids must be unique)" in result.stderr
