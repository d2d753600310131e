"""Input handling through the real `virnucpro prepare`: every valid nucleotide record is processed
(IUPAC codes, RNA, a byte-order mark, pipes, several files as one sample, any characters in ids),
everything else is one line naming the file, the record and the problem; the input's identity is
the SHA-256 of its bytes, recorded in prepare.json."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from Bio.SeqIO.FastaIO import SimpleFastaParser

from conftest import DATA, cli_env, run_cli
from virnucpro.files.layout import CHUNK_FRAMES_TSV, INPUT_SEQUENCES_TSV, PREPARE_JSON, SHARDS_DIR

EXAMPLE = DATA / "example.fa"


def prepared(outdir: Path) -> tuple[str, str, str]:
    """Everything prepare wrote that does not name the input: shards and chunk table."""
    shards = outdir / SHARDS_DIR
    return (
        "".join(p.read_text() for p in sorted(shards.glob("*.nucleotide.fa"))),
        "".join(p.read_text() for p in sorted(shards.glob("*.protein.faa"))),
        (outdir / CHUNK_FRAMES_TSV).read_text(),
    )


def summary(outdir: Path) -> dict:
    return json.loads((outdir / PREPARE_JSON).read_text())


def prepare_ok(*args, **kwargs) -> subprocess.CompletedProcess:
    result = run_cli("prepare", *args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("virnucpro: error: ")
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- Nucleotide or protein ---


def test_iupac_codes_are_nucleotides(tmp_path):
    """A record of IUPAC ambiguity codes in a normal file is processed, not taken for protein."""
    reads = tmp_path / "reads.fa"
    reads.write_text(EXAMPLE.read_text() + ">ambiguous\nMYRMCMcMN\n>masked\nACGTXXXXACGTRYKMSWBDHVN\n")
    prepare_ok(reads, "--outdir", tmp_path / "out")
    rows = (tmp_path / "out" / INPUT_SEQUENCES_TSV).read_text().splitlines()
    assert [row.split("\t")[0] for row in rows[-2:]] == ["ambiguous", "masked"]
    assert summary(tmp_path / "out")["sequences"] == 14


@pytest.mark.parametrize(
    ("sequence", "letter", "position"),
    [("MKVLAEFIPQLLSTWEERHHKK", "L", 4), ("ACGTACGTACGTE", "E", 13), ("ATGAAA*", "*", 7), ("ACGTJ", "J", 5)],
)
def test_a_letter_that_cannot_be_a_nucleotide_names_the_record_and_the_letter(
    tmp_path, sequence, letter, position
):
    reads = tmp_path / "reads.fa"
    reads.write_text(f">ok\nACGTACGT\n>p1 a protein\n{sequence}\n")
    line = one_line_error(run_cli("prepare", reads, "--outdir", tmp_path / "out"))
    assert f"{reads}: record 2 (p1): looks like protein" in line
    assert f"'{letter}' at sequence position {position}" in line


def test_rna_is_read_as_dna_and_said_so(tmp_path):
    records = list(SimpleFastaParser(EXAMPLE.open()))
    dna = "".join(f">{title}\n{seq}\n" for title, seq in records)
    rna = "".join(f">{title}\n{seq.replace('T', 'U').replace('t', 'u')}\n" for title, seq in records)
    (tmp_path / "dna.fa").write_text(dna)
    (tmp_path / "rna.fa").write_text(rna)
    prepare_ok(tmp_path / "dna.fa", "--outdir", tmp_path / "dna")
    result = prepare_ok(tmp_path / "rna.fa", "--outdir", tmp_path / "rna")
    assert prepared(tmp_path / "rna") == prepared(tmp_path / "dna")
    info = summary(tmp_path / "rna")
    with_u = sum("U" in seq.upper() for _, seq in SimpleFastaParser((tmp_path / "rna.fa").open()))
    assert info["rna_sequences"] == with_u > 0
    assert info["notes"] and "read as T" in info["notes"][0]
    assert "read as T" in result.stderr
    assert summary(tmp_path / "dna")["rna_sequences"] == 0 and summary(tmp_path / "dna")["notes"] == []


def test_lowercase_rna(tmp_path):
    (tmp_path / "lower.fa").write_text(">r\naugaaacccggguuuaaaccc\n")
    (tmp_path / "upper.fa").write_text(">r\nATGAAACCCGGGTTTAAACCC\n")
    prepare_ok(tmp_path / "lower.fa", "--outdir", tmp_path / "lower")
    prepare_ok(tmp_path / "upper.fa", "--outdir", tmp_path / "upper")
    assert prepared(tmp_path / "lower") == prepared(tmp_path / "upper")


# --- Encodings, line endings, streams ---


@pytest.mark.parametrize("variant", ["bom", "bom_crlf", "bom_gzip"])
def test_byte_order_mark_is_skipped(tmp_path, variant):
    prepare_ok(EXAMPLE, "--outdir", tmp_path / "plain")
    text = EXAMPLE.read_bytes()
    if variant == "bom_crlf":
        text = text.replace(b"\n", b"\r\n")
    data = b"\xef\xbb\xbf" + text
    path = tmp_path / "windows.fa"
    path.write_bytes(gzip.compress(data) if variant == "bom_gzip" else data)
    prepare_ok(path, "--outdir", tmp_path / "bom")
    assert prepared(tmp_path / "bom") == prepared(tmp_path / "plain")


def test_utf16_is_one_line(tmp_path):
    path = tmp_path / "utf16.fa"
    path.write_bytes(EXAMPLE.read_text().encode("utf-16"))
    assert "UTF-16" in one_line_error(run_cli("prepare", path, "--outdir", tmp_path / "out"))


def test_standard_input_is_read_as_a_stream_and_hashed(tmp_path):
    prepare_ok(EXAMPLE, "--outdir", tmp_path / "file")
    with open(EXAMPLE, "rb") as stdin:
        prepare_ok("-", "--outdir", tmp_path / "stdin", stdin=stdin)
    assert prepared(tmp_path / "stdin") == prepared(tmp_path / "file")
    (entry,) = summary(tmp_path / "stdin")["inputs"]
    assert entry["path"] == "standard input" and entry["sha256"] == sha256(EXAMPLE)


def test_a_fifo_is_read_as_a_stream(tmp_path):
    prepare_ok(EXAMPLE, "--outdir", tmp_path / "file")
    fifo = tmp_path / "reads.fifo"
    os.mkfifo(fifo)
    data = gzip.compress(EXAMPLE.read_bytes())
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    prepare_ok(fifo, "--outdir", tmp_path / "fifo", timeout=120)
    writer.join()
    assert prepared(tmp_path / "fifo") == prepared(tmp_path / "file")
    assert summary(tmp_path / "fifo")["inputs"][0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_run_refuses_a_stream_in_one_line(tmp_path):
    with open(EXAMPLE, "rb") as stdin:
        result = run_cli("run", "-", "--outdir", tmp_path / "out", stdin=stdin)
    line = one_line_error(result)
    assert "standard input" in line and "twice" in line
    assert not (tmp_path / "out").exists()


# --- Several files, one sample ---


def test_several_files_are_one_sample_in_the_given_order(tmp_path):
    records = list(SimpleFastaParser(EXAMPLE.open()))
    first = "".join(f">{t}\n{s}\n" for t, s in records[:5])
    second = "".join(f"@{t}\n{s}\n+\n{'I' * len(s)}\n" for t, s in records[5:])
    (tmp_path / "a.fa").write_text(first)
    (tmp_path / "b.fq.gz").write_bytes(gzip.compress(second.encode()))
    prepare_ok(EXAMPLE, "--outdir", tmp_path / "one", "--shard-size", "7")
    prepare_ok(tmp_path / "a.fa", tmp_path / "b.fq.gz", "--outdir", tmp_path / "two", "--shard-size", "7")
    assert prepared(tmp_path / "two") == prepared(tmp_path / "one")
    inputs = summary(tmp_path / "two")["inputs"]
    assert [(e["format"], e["compressed"], e["records"]) for e in inputs] == [
        ("fasta", False, 5),
        ("fastq", True, 7),
    ]
    assert [e["sha256"] for e in inputs] == [sha256(tmp_path / "a.fa"), sha256(tmp_path / "b.fq.gz")]
    rows = [r.split("\t") for r in (tmp_path / "two" / INPUT_SEQUENCES_TSV).read_text().splitlines()[1:]]
    assert [(r[1], r[4]) for r in rows][4:7] == [("5", "1"), ("1", "2"), ("2", "2")]


def test_a_duplicate_id_across_files_names_both_files(tmp_path):
    (tmp_path / "a.fa").write_text(">x\nACGT\n>y\nACGT\n")
    (tmp_path / "b.fa").write_text(">z\nACGT\n>y second copy\nACGT\n")
    line = one_line_error(
        run_cli("prepare", tmp_path / "a.fa", tmp_path / "b.fa", "--outdir", tmp_path / "o")
    )
    assert f"{tmp_path / 'b.fa'}: record 2 (y): duplicate sequence id: also in {tmp_path / 'a.fa'}" in line


def test_the_same_file_twice_is_refused(tmp_path):
    (tmp_path / "a.fa").write_text(">x\nACGT\n")
    (tmp_path / "link.fa").symlink_to(tmp_path / "a.fa")
    line = one_line_error(
        run_cli("prepare", tmp_path / "a.fa", tmp_path / "link.fa", "--outdir", tmp_path / "o")
    )
    assert "given twice" in line


def test_an_error_in_the_second_file_names_it_and_its_record(tmp_path):
    (tmp_path / "a.fa").write_text(">x\nACGT\n")
    (tmp_path / "b.fa").write_text(">z\nACGT\n>w\nAC-GT\n")
    line = one_line_error(
        run_cli("prepare", tmp_path / "a.fa", tmp_path / "b.fa", "--outdir", tmp_path / "o")
    )
    assert line.startswith(f"virnucpro: error: {tmp_path / 'b.fa'}: record 2 (w): unexpected character '-'")


# --- Ids, records and files of every shape ---


def test_ids_of_any_characters_and_length(tmp_path):
    long_id = "contig_" + "x" * 5000
    reads = tmp_path / "ids.fa"
    reads.write_text(
        f">séquence_α|gi|123| desc\twith tab\nATGAAACCCGGGTTTAAACCCGGG\n>{long_id}\nATGAAACCCGGGTTTAAACCCGGG\n"
        ">plain\n\n>header_only_then_next\n>next\nATGAAACCCGGG\n",
        encoding="utf-8",
    )
    result = prepare_ok(reads, "--outdir", tmp_path / "out")
    ids = [r.split("\t")[0] for r in (tmp_path / "out" / INPUT_SEQUENCES_TSV).read_text().splitlines()[1:]]
    assert ids == ["séquence_α|gi|123|", long_id, "plain", "header_only_then_next", "next"]
    frames = (tmp_path / "out" / SHARDS_DIR / "shard_00001.nucleotide.fa").read_text(encoding="utf-8")
    assert ">séquence_α|gi|123|_chunk_1F1\n" in frames
    assert "record 4 (header_only_then_next) is empty" in result.stderr


def test_concatenated_gzip_members_are_read_whole(tmp_path):
    text = EXAMPLE.read_bytes()
    half = text.index(b">read_3")
    path = tmp_path / "members.fa.gz"
    path.write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]))
    prepare_ok(EXAMPLE, "--outdir", tmp_path / "plain")
    prepare_ok(path, "--outdir", tmp_path / "members")
    assert prepared(tmp_path / "members") == prepared(tmp_path / "plain")
    assert summary(tmp_path / "members")["inputs"][0]["sha256"] == sha256(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # mtime=0: the bytes name the test, and every xdist worker must collect the same names
        (b"", "empty file"),
        (gzip.compress(b"", mtime=0), "no records"),
        (gzip.compress(b">a\nACGT\n" * 5000, mtime=0)[:-100], "truncated or corrupt gzip"),
        (b"@r1\nACGTACGT\n+\nIIII\n@r2\nACGT\n+\nIIII\n", "record 1: malformed FASTQ"),
        (b">a\nAC\xe9GT\n", "not a text file"),
        (b">a\nACGT\xc3\xa9\n", "unexpected character '\xe9' at sequence position 5"),
        (bz2.compress(b">a\nACGT\n"), "bzip2-compressed: only plain or gzip-compressed FASTA/FASTQ"),
        (b"\x00" * 100_000, "not a text file (binary content)"),  # no line end to look for
    ],
)
def test_broken_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.fa"
    path.write_bytes(content)
    line = one_line_error(run_cli("prepare", path, "--outdir", tmp_path / "out"))
    assert line.startswith(f"virnucpro: error: {path}: ") and message in line


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_binary_stream_is_refused_at_once(tmp_path):
    line = one_line_error(run_cli("prepare", "/dev/zero", "--outdir", tmp_path / "out", timeout=60))
    assert "/dev/zero: not a text file" in line


def test_a_folder_or_a_missing_file_is_one_line(tmp_path):
    assert "is a folder" in one_line_error(run_cli("prepare", tmp_path, "--outdir", tmp_path / "out"))
    assert "no such file" in one_line_error(
        run_cli("prepare", tmp_path / "no.fa", "--outdir", tmp_path / "o")
    )
    assert not (tmp_path / "o").exists()


def test_the_input_hash_is_of_the_bytes_as_stored(tmp_path):
    path = tmp_path / "reads.fa.gz"
    path.write_bytes(gzip.compress(EXAMPLE.read_bytes()) + b"\x00" * 16)  # padding after the member
    prepare_ok(path, "--outdir", tmp_path / "out")
    assert summary(tmp_path / "out")["inputs"][0]["sha256"] == sha256(path)


@pytest.mark.parametrize(
    "signum, code, last_line",
    [(2, 130, "virnucpro: interrupted"), (15, 143, "virnucpro: terminated by SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_prepare_interrupted_leaves_nothing_and_says_so(tmp_path, signum, code, last_line):
    reads = tmp_path / "big.fa"
    with open(reads, "w") as out:
        for i in range(60_000):
            out.write(f">r{i}\n{'ATGAAACCCGGGTTT' * 20}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "virnucpro", "prepare", str(reads), "--outdir", str(tmp_path / "out")],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the staging folder exists (prepare is reading).
    while not list((tmp_path / "out").glob(".prepare-*")) and process.poll() is None:
        pass
    process.send_signal(signum)  # SIGINT as Ctrl-C sends, SIGTERM as `kill` or a scheduler sends
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == last_line
    assert not (tmp_path / "out").exists()  # the folder it made goes too
