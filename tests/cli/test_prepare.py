"""`virnucpro prepare` end to end through the real command: golden parity, shard layout, input
formats, and one clear line for every kind of bad input."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import pytest
from Bio.SeqIO.FastaIO import SimpleFastaParser

from conftest import golden_or_skip, run_cli
from virnucpro.files.layout import CHUNK_FRAMES_TSV


def concatenated(folder: Path, pattern: str) -> str:
    return "".join(path.read_text() for path in sorted(folder.glob(pattern)))


def read_tsv(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


@pytest.mark.parametrize("name", ["test_with_orfs", "test_fixed_500bp"])
@pytest.mark.parametrize("shard_size", [10_000, 1])
def test_shards_concatenate_to_the_original_outputs(tmp_path, name, shard_size):
    golden = golden_or_skip()
    run_cli("prepare", golden / f"{name}.fa", "--outdir", tmp_path, "--shard-size", shard_size, check=True)
    shards = tmp_path / "shards"
    expected_nucleotide = (golden / f"{name}_identified_nucleotide.fa").read_text()
    assert concatenated(shards, "shard_*.nucleotide.fa") == expected_nucleotide
    assert (
        concatenated(shards, "shard_*.protein.faa") == (golden / f"{name}_identified_protein.faa").read_text()
    )
    # The chunks the original wrote (its _chunked500.fa) are the spans listed in chunk_frames.tsv.
    sequences = dict(SimpleFastaParser((golden / f"{name}.fa").open()))
    original_chunks = list(SimpleFastaParser((golden / f"{name}_chunked500.fa").open()))
    rows = read_tsv(tmp_path / CHUNK_FRAMES_TSV)
    assert [row["chunk_id"] for row in rows] == [chunk_id for chunk_id, _ in original_chunks]
    for row, (_, chunk) in zip(rows, original_chunks, strict=True):
        assert sequences[row["sequence_id"]][int(row["start"]) - 1 : int(row["end"])] == chunk
    frames_total = expected_nucleotide.count(">")
    assert len(list(shards.glob("*.nucleotide.fa"))) == -(-frames_total // shard_size)


def test_example_layout_and_tables(tmp_path, example_fasta):
    run_cli("prepare", example_fasta, "--outdir", tmp_path, "--shard-size", 7, check=True)
    summary = json.loads((tmp_path / "prepare.json").read_text())
    assert (summary["sequences"], summary["empty_sequences"]) == (12, 1)
    assert (summary["chunks"], summary["frames"]) == (53, 30)
    assert [s["records"] for s in summary["shards"]] == [7, 7, 7, 7, 2]
    shards = tmp_path / "shards"
    for shard in summary["shards"]:
        nucleotide_ids = [t for t, _ in SimpleFastaParser((shards / f"{shard['name']}.nucleotide.fa").open())]
        protein_ids = [t for t, _ in SimpleFastaParser((shards / f"{shard['name']}.protein.faa").open())]
        assert nucleotide_ids == protein_ids and len(nucleotide_ids) == shard["records"]

    chunks = read_tsv(tmp_path / CHUNK_FRAMES_TSV)
    assert len(chunks) == 53
    frame_ids = [t for t, _ in SimpleFastaParser(io.StringIO(concatenated(shards, "*.nucleotide.fa")))]
    listed = [row["chunk_id"] + label for row in chunks for label in filter(None, row["frames"].split(","))]
    assert listed == frame_ids
    assert sum(int(row["n_frames"]) for row in chunks) == 30
    assert any(row["n_frames"] == "0" for row in chunks)
    short = next(row for row in chunks if row["sequence_id"] == "short_7")
    assert (short["start"], short["end"], short["length"], short["frames"]) == ("1", "2", "2", "")

    sequences = read_tsv(tmp_path / "input_sequences.tsv")
    assert [row["sequence_id"] for row in sequences][:3] == [
        "phage_like_contig_1",
        "plasmid_fragment_2",
        "read_3",
    ]
    empty = next(row for row in sequences if row["sequence_id"] == "empty_11")
    assert (empty["length"], empty["n_chunks"]) == ("0", "0")
    assert not list(tmp_path.glob(".prepare-*"))


def shard_texts(folder: Path) -> tuple[str, str, str]:
    return (
        concatenated(folder / "shards", "*.nucleotide.fa"),
        concatenated(folder / "shards", "*.protein.faa"),
        (folder / CHUNK_FRAMES_TSV).read_text(),
    )


def test_fastq_gzip_crlf_and_blank_lines_give_the_same_shards(tmp_path, example_fasta):
    records = list(SimpleFastaParser(example_fasta.open()))
    run_cli("prepare", example_fasta, "--outdir", tmp_path / "fasta", check=True)
    expected = shard_texts(tmp_path / "fasta")

    fastq = "".join(f"@{title}\n{seq}\n+\n{'I' * len(seq)}\n" for title, seq in records)
    (tmp_path / "reads.txt").write_bytes(gzip.compress(fastq.encode()))  # no telling file name
    messy = "\r\n\r\n".join(f">{title}\r\n{seq[:70]}\r\n\r\n{seq[70:]}" for title, seq in records)
    (tmp_path / "messy.fa").write_text(messy, newline="")
    for name in ("reads.txt", "messy.fa"):
        run_cli("prepare", tmp_path / name, "--outdir", tmp_path / name.split(".")[0], check=True)
        assert shard_texts(tmp_path / name.split(".")[0]) == expected
    (entry,) = json.loads((tmp_path / "reads" / "prepare.json").read_text())["inputs"]
    assert (entry["format"], entry["compressed"], entry["records"]) == ("fastq", True, 12)


def test_chunk_size_300(tmp_path, example_fasta):
    run_cli("prepare", example_fasta, "--outdir", tmp_path, "--chunk-size", 300, check=True)
    chunks = read_tsv(tmp_path / CHUNK_FRAMES_TSV)
    assert max(int(row["length"]) for row in chunks) == 300


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


GOOD = ">a\nACGTACGTAAAT\n"
BAD_INPUTS = {
    "missing": (None, "no such file"),
    "empty": (b"", "empty file"),
    "blank_only": (b"\n\n  \n", "no records"),
    "text_before_header": ("some notes\n" + GOOD, "line 1 comes before the first header"),
    "header_without_id": (">\nACGT\n", "record 1: header has no id"),
    "header_space_id": ("> a b\nACGT\n", "record 1: header has no id"),
    "duplicate_ids": (GOOD + ">b\nACGT\n>a second\nACGT\n", "record 3 (a): duplicate sequence id"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not a text file"),
    "binary_after_header": (b">a\nAC\x00\xff\xfeGT\n", "not a text file"),
    "truncated_gzip": (
        gzip.compress("".join(f">s{i}\nACGTAAAT\n" for i in range(3000)).encode())[:-40],
        "truncated or corrupt gzip",
    ),
    "fastq_quality_length": ("@r1\nACGTACGT\n+\nIIII\n", "record 1: malformed FASTQ: quality string length"),
    "protein": (">p1 a protein\nMKVLAEFIPQLLSTWEERHHKKLPQ\n", "record 1 (p1): looks like protein"),
    "bad_character": (">a\nACGT-ACGT\n", "record 1 (a): unexpected character '-'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_with_one_line_and_leaves_nothing_finished(tmp_path, case):
    content, message = BAD_INPUTS[case]
    path = tmp_path / f"{case}.fa"
    if content is not None:
        write(path, content)
    outdir = tmp_path / "out"
    result = run_cli("prepare", path, "--outdir", outdir, "--shard-size", 1)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"virnucpro: error: {path}: ")
    assert message in lines[0]
    leftovers = sorted(p.relative_to(outdir) for p in outdir.rglob("*")) if outdir.exists() else []
    assert leftovers == []


def test_error_late_in_a_large_input_leaves_no_shards(tmp_path):
    body = "".join(f">s{i}\n{'ATG' + 'AAA' * 100}\n" for i in range(300))
    path = write(tmp_path / "late.fa", body + ">s7\nACGT\n")
    outdir = tmp_path / "out"
    result = run_cli("prepare", path, "--outdir", outdir, "--shard-size", 5)
    assert result.returncode == 2 and "record 301 (s7): duplicate sequence id" in result.stderr
    assert not outdir.exists()  # no shards, no prepare.json, not even the folder it made


def test_failed_rerun_keeps_the_previous_complete_output(tmp_path, example_fasta):
    outdir = tmp_path / "out"
    run_cli("prepare", example_fasta, "--outdir", outdir, check=True)
    before = shard_texts(outdir)
    bad = write(tmp_path / "bad.fa", ">x\nACGT\n>x\nACGT\n")
    assert run_cli("prepare", bad, "--outdir", outdir).returncode == 2
    assert shard_texts(outdir) == before and (outdir / "prepare.json").exists()


def test_unwritable_output_folder(tmp_path, example_fasta):
    blocker = write(tmp_path / "a_file", "not a folder")
    result = run_cli("prepare", example_fasta, "--outdir", blocker / "out")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        f"virnucpro: error: {blocker / 'out'}: cannot write the output folder"
    )


@pytest.mark.parametrize(("option", "value"), [("--chunk-size", "400"), ("--shard-size", "0")])
def test_bad_parameters(tmp_path, example_fasta, option, value):
    result = run_cli("prepare", example_fasta, "--outdir", tmp_path, option, value)
    assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr


def test_quiet_prints_nothing_on_success_and_progress_otherwise(tmp_path, example_fasta):
    quiet = run_cli("prepare", example_fasta, "--outdir", tmp_path / "q", "--quiet")
    assert quiet.returncode == 0 and "empty_11" in quiet.stderr  # warnings stay
    assert "prepare:" not in quiet.stderr
    loud = run_cli("prepare", example_fasta, "--outdir", tmp_path / "l")
    assert "prepare: 12 sequences, 53 chunks (23 without a stop-free frame), 30 frames" in loud.stderr


def test_help_and_version():
    result = run_cli("prepare", "--help")
    assert result.returncode == 0
    for option in ("--chunk-size", "--shard-size", "--outdir", "--quiet", "default: 500", "default: 10000"):
        assert option in result.stdout
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("virnucpro ")


def test_staging_left_by_a_killed_run_is_removed(tmp_path, example_fasta):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    abandoned = tmp_path / f".prepare-{dead.stdout.strip()}-abc123"
    (abandoned / "shards").mkdir(parents=True)
    alive = tmp_path / f".prepare-{os.getpid()}-def456"  # a live process's staging stays
    alive.mkdir()
    run_cli("prepare", example_fasta, "--outdir", tmp_path, check=True)
    assert not abandoned.exists() and alive.exists()


def test_the_garbage_collector_is_back_on_after_prepare_in_process(tmp_path, example_fasta):
    # prepare pauses the cyclic collector while it reads; callers in the same process (virnucpro
    # run, library users) must get it back, after success and after an input error alike.
    import gc

    from virnucpro.errors import InputError
    from virnucpro.stages.prepare import prepare

    summary = prepare(example_fasta, tmp_path / "ok", quiet=True)
    assert summary.frames == 30 and gc.isenabled()
    bad = write(tmp_path / "bad.fa", ">x\nACGT\n>x\nACGT\n")
    with pytest.raises(InputError, match="duplicate sequence id"):
        prepare(bad, tmp_path / "bad", quiet=True)
    assert gc.isenabled()
