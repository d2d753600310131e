"""Viral regions, margins and confidence tiers, on samples whose chunk scores are scripted: a
40-chunk contig with a viral stretch at chunks 12-25 and single-chunk noise elsewhere, short reads,
all-unscored sequences, a region at each end, and runs separated by the gap limit and by one chunk
more. The real prepare cuts the chunks; boundaries must come out exact, and the TSV, BED and FASTA
must agree with one another and with the input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from synthetic import scripted_sample
from virnucpro.errors import InputError
from virnucpro.files.sequences import read_sequences
from virnucpro.method.frames import chunk_bounds
from virnucpro.report.tables import REGION_COLUMNS, float32_text
from virnucpro.stages.report import ReportOptions, report

HI, LO = 0.95, 0.05  # P(virus) of a viral and of a non-viral chunk's frames
NOISE = 0.8  # a lone viral chunk: viral, medium confidence, never a region by itself

PROPHAGE_HOST = [LO] * 40
for k in range(12, 26):
    PROPHAGE_HOST[k - 1] = HI
PROPHAGE_HOST[3] = PROPHAGE_HOST[33] = NOISE  # chunks 4 and 34
SCRIPT = {
    "host": PROPHAGE_HOST,
    "read_viral": [HI],
    "read_others": [LO],
    "pair_one_viral": [LO, HI],  # two chunks: one viral chunk is enough
    "triple_one_viral": [LO, HI, LO],  # three chunks: it is not
    "unscored": [None, None, None],
    "both_ends": [HI, HI, LO, LO, LO, LO, HI, HI, HI],
    # 5-7 and 9-11 are one gap (max_gap 1) apart; 20-22 and 25-27 are two gaps apart; 30-31 and
    # 33-34 are bridged over an unscored chunk.
    "gaps": [LO] * 4
    + [HI] * 3
    + [LO]
    + [HI] * 3
    + [LO] * 8
    + [HI] * 3
    + [LO] * 2
    + [HI] * 3
    + [LO] * 2
    + [HI] * 2
    + [None]
    + [HI] * 2
    + [LO] * 2,
}


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def span(seq_id: str, first: int, last: int, length: int | None = None) -> tuple[int, int]:
    """1-based inclusive coordinates from the start of chunk `first` to the end of chunk `last`."""
    length = length or 500 * len(SCRIPT[seq_id]) - 37
    bounds = chunk_bounds(length, 500)
    return bounds[first - 1][0] + 1, bounds[last - 1][1]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripted")
    return scripted_sample(folder, SCRIPT, shard_size=50)


@pytest.fixture(scope="module")
def reported(sample, tmp_path_factory):
    fasta, prepared, scores = sample
    outdir = tmp_path_factory.mktemp("regions") / "out"
    result = run_cli(
        "report", "--input", fasta, "--prepared", prepared, "--scores", *scores, "--outdir", outdir
    )
    assert result.returncode == 0, result.stderr
    return outdir


def regions_of(outdir: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Per sequence: (start, end, viral chunks) of each region, in order."""
    found: dict[str, list] = {}
    for row in read_tsv(outdir / "viral_regions.tsv"):
        found.setdefault(row["sequence_id"], []).append(
            (int(row["start"]), int(row["end"]), int(row["viral_chunks"]))
        )
    return found


def test_region_boundaries_are_exact(reported):
    found = regions_of(reported)
    assert found == {
        "host": [(*span("host", 12, 25), 14)],  # the noise at chunks 4 and 34 is no region
        "read_viral": [(1, 463, 1)],
        "pair_one_viral": [(*span("pair_one_viral", 2, 2), 1)],
        "both_ends": [(*span("both_ends", 1, 2), 2), (*span("both_ends", 7, 9), 3)],
        "gaps": [
            (*span("gaps", 5, 11), 6),
            (*span("gaps", 20, 22), 3),
            (*span("gaps", 25, 27), 3),
            (*span("gaps", 30, 34), 4),
        ],
    }
    assert found["both_ends"][0][0] == 1 and found["both_ends"][-1][1] == 500 * 9 - 37


def test_region_rows_count_each_base_once(sample, reported):
    fasta, _, _ = sample
    lengths = {r.id: len(r.sequence) for r in read_sequences(fasta)}
    chunks = read_tsv(reported / "chunks.tsv")
    rows = read_tsv(reported / "viral_regions.tsv")
    assert tuple(rows[0]) == REGION_COLUMNS
    numbers: dict[str, list[int]] = {}
    for row in rows:
        start, end, length = int(row["start"]), int(row["end"]), int(row["length"])
        # Neighbouring chunks overlap: the region is shorter than its chunks laid end to end.
        assert length == end - start + 1
        spanned = [
            int(c["length"]) for c in chunks
            if c["sequence_id"] == row["sequence_id"] and int(c["start"]) >= start and int(c["end"]) <= end
        ]  # fmt: skip
        if len(spanned) > 1:
            assert length < sum(spanned)
        assert row["fraction_of_sequence"] == f"{length / lengths[row['sequence_id']]:.4f}"
        numbers.setdefault(row["sequence_id"], []).append(int(row["region"]))
    assert all(n == list(range(1, len(n) + 1)) for n in numbers.values())
    host = next(r for r in rows if r["sequence_id"] == "host")
    assert (host["scored_chunks"], host["mean_score_virus"], host["min_score_virus"]) == (
        "14",
        "0.95",
        "0.95",
    )
    bridged = next(r for r in rows if r["sequence_id"] == "gaps" and r["region"] == "1")
    # Chunk 8 (others) is inside: scored, and it sets the minimum; chunk 32 (unscored) is not scored.
    assert bridged["scored_chunks"] == "7" and bridged["min_score_virus"] == float32_text(LO)
    last = next(r for r in rows if r["sequence_id"] == "gaps" and r["region"] == "4")
    assert last["scored_chunks"] == "4" and last["viral_chunks"] == "4"


def test_tsv_bed_and_fasta_agree(sample, reported):
    fasta, _, _ = sample
    sequences = {r.id: r.sequence for r in read_sequences(fasta)}
    rows = read_tsv(reported / "viral_regions.tsv")
    bed = [line.split("\t") for line in (reported / "viral_regions.bed").read_text().splitlines()]
    fasta_lines = (reported / "viral_regions.fa").read_text().splitlines()
    assert len(rows) == len(bed) == len(fasta_lines) // 2 == 9
    for row, fields, header, bases in zip(rows, bed, fasta_lines[::2], fasta_lines[1::2], strict=True):
        seq_id, start, end = row["sequence_id"], int(row["start"]), int(row["end"])
        name = f"{seq_id}|region_{row['region']}"
        assert fields == [
            seq_id,
            str(start - 1),
            str(end),
            name,
            str(round(float(row["mean_score_virus"]) * 1000)),
            ".",
        ]
        assert 0 <= int(fields[4]) <= 1000
        assert header == f">{name}|{start}-{end}"
        assert bases == sequences[seq_id][start - 1 : end] and len(bases) == int(row["length"])


def test_sequences_gain_regions_and_kind(reported):
    sequences = {row["sequence_id"]: row for row in read_tsv(reported / "sequences.tsv")}
    expected = {
        "host": ("others", "1", "region"),  # a prophage-like stretch in a host contig
        "read_viral": ("virus", "1", "viral"),
        "read_others": ("others", "0", "none"),
        "pair_one_viral": ("virus", "1", "viral"),
        "triple_one_viral": ("others", "0", "none"),
        "unscored": ("unscored", "0", "none"),
        "both_ends": ("virus", "2", "viral"),
        "gaps": ("others", "4", "region"),
    }
    assert {k: (v["call"], v["viral_regions"], v["kind"]) for k, v in sequences.items()} == expected


def test_margin_and_confidence_of_every_chunk(reported):
    for chunk in read_tsv(reported / "chunks.tsv"):
        if chunk["call"] == "unscored":
            assert chunk["margin"] == chunk["confidence"] == chunk["estimated_fdr"] == ""
            continue
        virus, others = np.float32(chunk["max_score_virus"]), np.float32(chunk["max_score_others"])
        assert chunk["margin"] == float32_text(virus - others)
        assert (np.float32(chunk["margin"]) >= 0) == (chunk["call"] == "virus")
        winning = virus if chunk["call"] == "virus" else others
        expected = "high" if winning >= np.float32(0.9) else "medium" if winning >= np.float32(0.7) else "low"
        assert chunk["confidence"] == expected
        assert chunk["estimated_fdr"] == ""  # no calibration
    noise = [
        c for c in read_tsv(reported / "chunks.tsv") if c["chunk_id"] in ("host_chunk_4", "host_chunk_34")
    ]
    assert [(c["call"], c["confidence"]) for c in noise] == [("virus", "medium")] * 2


def sequence_tier(chunks: list[dict[str, str]], call: str) -> str:
    """The documented rule, written out again: high when at least half the scored chunks are
    high-confidence chunks of the call and none is a high-confidence chunk of the other class."""
    scored = [c for c in chunks if c["call"] != "unscored"]
    if not scored:
        return ""
    agreeing_high = sum(c["call"] == call and c["confidence"] == "high" for c in scored)
    other_high = sum(c["call"] != call and c["confidence"] == "high" for c in scored)
    agreeing_medium = sum(c["call"] == call and c["confidence"] == "medium" for c in scored)
    if 2 * agreeing_high >= len(scored) and not other_high:
        return "high"
    return "medium" if 2 * (agreeing_high + agreeing_medium) >= len(scored) else "low"


def test_tier_shares_and_rule_for_sequences_and_regions(reported):
    chunks = read_tsv(reported / "chunks.tsv")
    by_sequence: dict[str, list] = {}
    for chunk in chunks:
        by_sequence.setdefault(chunk["sequence_id"], []).append(chunk)
    tiers = set()
    for row in read_tsv(reported / "sequences.tsv"):
        mine = [c for c in by_sequence[row["sequence_id"]] if c["call"] != "unscored"]
        for tier in ("high", "medium", "low"):
            share = sum(c["confidence"] == tier for c in mine) / len(mine) if mine else None
            assert row[f"share_{tier}"] == ("" if share is None else f"{share:.4f}")
        assert row["confidence"] == sequence_tier(mine, row["call"])
        tiers.add(row["confidence"])
    assert {"high", "medium", ""} <= tiers
    for region in read_tsv(reported / "viral_regions.tsv"):
        first, last = int(region["start"]), int(region["end"])
        inside = [
            c for c in by_sequence[region["sequence_id"]]
            if c["call"] != "unscored" and int(c["start"]) >= first and int(c["end"]) <= last
        ]  # fmt: skip
        assert len(inside) == int(region["scored_chunks"])
        assert region["confidence"] == sequence_tier(inside, "virus")
        assert region["share_high"] == f"{sum(c['confidence'] == 'high' for c in inside) / len(inside):.4f}"


def test_region_parameters(sample, tmp_path):
    fasta, prepared, scores = sample
    wide = report(
        fasta, prepared, scores, tmp_path / "wide", options=ReportOptions(region_max_gap=2), quiet=True
    )
    # 20-22, 25-27 and 30-34 are two chunks apart each: one region now.
    assert regions_of(tmp_path / "wide")["gaps"] == [(*span("gaps", 5, 11), 6), (*span("gaps", 20, 34), 10)]
    assert wide.settings["region_max_gap"] == 2
    report(
        fasta, prepared, scores, tmp_path / "strict", options=ReportOptions(region_min_chunks=3), quiet=True
    )
    strict = regions_of(tmp_path / "strict")
    assert "both_ends" in strict and strict["both_ends"] == [(*span("both_ends", 7, 9), 3)]
    assert strict["pair_one_viral"] == [(*span("pair_one_viral", 2, 2), 1)]  # short sequences: 1 chunk
    report(fasta, prepared, scores, tmp_path / "tight", options=ReportOptions(region_max_gap=0), quiet=True)
    assert len(regions_of(tmp_path / "tight")["gaps"]) == 6
    tiers = read_tsv(tmp_path / "tight" / "chunks.tsv")
    report(
        fasta, prepared, scores, tmp_path / "sure",
        options=ReportOptions(confidence_high=0.96, confidence_medium=0.5), quiet=True,
    )  # fmt: skip
    sure = read_tsv(tmp_path / "sure" / "chunks.tsv")
    assert {c["confidence"] for c in tiers if c["call"] != "unscored"} == {"high", "medium"}
    assert {c["confidence"] for c in sure if c["call"] != "unscored"} == {"medium"}


def test_bad_parameters_are_one_line_errors(sample, tmp_path):
    fasta, prepared, scores = sample
    with pytest.raises(InputError, match="--confidence-medium"):
        report(
            fasta, prepared, scores, tmp_path / "a", options=ReportOptions(confidence_medium=0.95), quiet=True
        )
    base = [
        "report",
        "--input",
        fasta,
        "--prepared",
        prepared,
        "--scores",
        *scores,
        "--outdir",
        tmp_path / "b",
    ]
    for extra, message in (
        (["--region-max-gap", "-1"], "--region-max-gap"),
        (["--region-min-chunks", "0"], "--region-min-chunks"),
        (["--confidence-high", "0.6"], "--confidence-medium (0.7) and --confidence-high (0.6)"),
        (["--target-fdr", "0"], "--target-fdr"),
    ):
        result = run_cli(*base, *extra)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
