"""Viral regions: where in a sequence the virus is, from its chunk calls.

Per sequence, runs of viral chunks are joined across at most `max_gap` consecutive chunks that are
not viral (called others, or unscored); a run is a region when it holds at least `min_chunks`
viral chunks (1 in sequences of one or two chunks). A region spans from the start of its first
viral chunk to the end of its last one (1-based, inclusive, as in chunks.tsv): neighbouring chunks
overlap by a few bases, and a region's length counts each base once. Regions are numbered 1, 2, ...
in each sequence. Everything is computed on whole columns at once.

A sequence's `kind`: `viral` when the whole sequence is called virus; `region` when it is not but
holds at least one viral region (a prophage in a host contig, say); `none` otherwise, unscored
sequences included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from virnucpro.defaults import MAX_CHUNKS_PER_SEQUENCE
from virnucpro.errors import InputError
from virnucpro.method.calls import NO_KIND, REGION_KIND, VIRAL_KIND, group_means
from virnucpro.method.confidence import summarise_tiers


@dataclass
class RegionTable:
    """Regions in sequence order, then position."""

    sequence: np.ndarray  # int32: row of the region's sequence
    number: np.ndarray  # int32: 1, 2, ... within its sequence
    first_chunk: np.ndarray  # int32 (int64 past 2^31 chunks): row of its first viral chunk
    last_chunk: np.ndarray  # as first_chunk: row of its last viral chunk
    start: np.ndarray  # the chunk table's positions' dtype: 1-based, inclusive
    end: np.ndarray  # inclusive
    viral_chunks: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.start)

    @property
    def length(self) -> np.ndarray:
        return self.end - self.start + 1

    def chunk_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk row from each region's first to last viral chunk, and the region of each."""
        span = self.last_chunk.astype(np.int64) - self.first_chunk + 1
        region = np.repeat(np.arange(len(self)), span)
        offset = np.cumsum(span) - span
        return self.first_chunk[region] + (np.arange(int(span.sum())) - offset[region]), region

    def part(self, rows: slice) -> RegionTable:
        """The regions `rows` (views of the columns)."""
        return RegionTable(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})


def check_region_bounds(max_gap: int, min_chunks: int) -> None:
    for option, value, low in (("--region-max-gap", max_gap, 0), ("--region-min-chunks", min_chunks, 1)):
        if not low <= value <= MAX_CHUNKS_PER_SEQUENCE:
            raise InputError(
                f"{option} must be from {low} to {MAX_CHUNKS_PER_SEQUENCE} (more chunks than a sequence "
                f"can have), not {value}"
            )


def call_regions(
    viral: np.ndarray,
    sequence: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    n_chunks: np.ndarray,
    max_gap: int,
    min_chunks: int,
) -> RegionTable:
    """The regions of every sequence from per-chunk columns in chunk order (`sequence`: the row of
    each chunk's sequence; `n_chunks`: per sequence)."""
    check_region_bounds(max_gap, min_chunks)
    rows = np.flatnonzero(viral)
    if not rows.size:
        empty, narrow = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
        return RegionTable(narrow, narrow, empty, empty, empty, empty, narrow)
    owner = sequence[rows]
    # A run starts at the first viral chunk, in a new sequence, or after more than max_gap others.
    starts_run = np.ones(rows.size, dtype=bool)
    starts_run[1:] = (owner[1:] != owner[:-1]) | (rows[1:] - rows[:-1] - 1 > max_gap)
    run_start = np.flatnonzero(starts_run)
    run_end = np.append(run_start[1:], rows.size) - 1
    count = run_end - run_start + 1
    run_owner = owner[run_start]
    needed = np.where(n_chunks[run_owner] <= 2, 1, min_chunks)
    kept = count >= needed
    positions = np.int32 if len(viral) < 2**31 else np.int64
    first, last = rows[run_start[kept]].astype(positions), rows[run_end[kept]].astype(positions)
    run_owner = run_owner[kept]
    new_sequence = np.ones(run_owner.size, dtype=bool)
    new_sequence[1:] = run_owner[1:] != run_owner[:-1]
    group_start = np.flatnonzero(new_sequence)
    number = np.arange(run_owner.size) - np.repeat(
        group_start, np.diff(np.append(group_start, run_owner.size))
    )
    return RegionTable(
        sequence=run_owner.astype(np.int32),
        number=(number + 1).astype(np.int32),
        first_chunk=first,
        last_chunk=last,
        start=start[first],
        end=end[last],
        viral_chunks=count[kept].astype(np.int32),
    )


def covered_bases(regions: RegionTable, n_sequences: int) -> np.ndarray:
    """Bases of each sequence inside its regions, each base counted once."""
    # Regions of a sequence are ordered and two regions never share a chunk, but neighbouring
    # chunks overlap: subtract what a region shares with the one before it.
    length = regions.length
    same = np.zeros(len(regions), dtype=bool)
    same[1:] = regions.sequence[1:] == regions.sequence[:-1]
    shared = np.zeros(len(regions), dtype=np.int64)
    shared[1:] = np.where(
        same[1:], np.maximum(0, regions.end[:-1].astype(np.int64) - regions.start[1:] + 1), 0
    )
    return np.bincount(regions.sequence, weights=length - shared, minlength=n_sequences).astype(np.int64)


@dataclass
class RegionSummary:
    """The regions with what their chunks say: every column per region, in RegionTable order."""

    table: RegionTable
    scored_chunks: np.ndarray  # int32: scored chunks from the first to the last viral chunk
    mean_virus: np.ndarray  # float64: numpy's mean of their best P(virus)
    min_virus: np.ndarray  # float32
    tier: np.ndarray  # uint8: the region's tier for its call (virus); see region_tiers


def summarise_regions(
    regions: RegionTable,
    scored: np.ndarray,
    max_virus: np.ndarray,
    called_viral: np.ndarray,
    tiers: np.ndarray,
) -> RegionSummary:
    """Scores and confidence tiers of each region's scored chunks (bridged ones included)."""
    rows, region = _scored_chunk_rows(regions, scored)
    counts = np.bincount(region, minlength=len(regions)).astype(np.int32)  # each holds a viral, scored chunk
    values = max_virus[rows]
    return RegionSummary(
        table=regions,
        scored_chunks=counts,
        mean_virus=group_means(values, counts) if len(regions) else np.empty(0),
        min_virus=np.minimum.reduceat(values, np.cumsum(counts) - counts) if len(regions) else values,
        tier=summarise_tiers(region, tiers[rows], called_viral[rows], len(regions))[1],
    )


def region_tiers(
    regions: RegionTable, scored: np.ndarray, tiers: np.ndarray, called_viral: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`confidence.summarise_tiers` of the regions' scored chunks: their tier counts (low, medium,
    high) and tiers. Asked for a part of the regions at a time when writing: the counts of every
    region would be 12 bytes a region, held throughout."""
    rows, region = _scored_chunk_rows(regions, scored)
    return summarise_tiers(region, tiers[rows], called_viral[rows], len(regions))


def _scored_chunk_rows(regions: RegionTable, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, region = regions.chunk_rows()
    kept = scored[rows]
    return rows[kept], region[kept]


def sequence_kinds(calls_virus: np.ndarray, viral_regions: np.ndarray) -> np.ndarray:
    """Each sequence's kind (uint8, a position in KINDS)."""
    kinds = np.full(len(calls_virus), NO_KIND, dtype=np.uint8)
    kinds[viral_regions > 0] = REGION_KIND
    kinds[calls_virus] = VIRAL_KIND
    return kinds
