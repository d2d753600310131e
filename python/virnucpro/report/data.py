"""The report's data, column by column: prepare's chunk table joined with every frame's score.

Memory grows by about 28 bytes per chunk and 35 per sequence (numpy arrays; viral regions and a
calibration add their own), plus the ids in one Arrow string array, with no Python object per chunk
or frame; the rest is made a batch of rows at a time. The report of 10^7 reads of 150 bp peaks near
1.4 GB (`bench/report.py --phases` prints each step's peak). Prepare's chunk table is read in
blocks; the score files are read one at a time in name order, which is the order of the frames in
the chunk table (shards are numbered in input order), so each block's frames are checked against
the next rows of the scores, reduced to the chunk's best scores and dropped. Score files in another
order (renamed files) are joined by id instead, holding every id in memory. Missing, extra and
duplicated ids are named in the error.

Calls: a chunk is viral when its margin, max(score_virus) - max(score_others) over its frames, is at
least `chunk_threshold`; the published rule (the original's consensus) is 0, i.e. max(score_virus)
>= max(score_others), and a calibration may choose another. A sequence is `virus` when viral chunks
/ scored chunks >= `min_viral_fraction`, `others` otherwise, `unscored` when none of its chunks kept
a frame (empty sequences too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from virnucpro.errors import InputError, abbreviated_ids
from virnucpro.files.layout import INPUT_SEQUENCES_TSV, PrepareLayout
from virnucpro.files.prepared import read_summary
from virnucpro.files.score_files import read_scores
from virnucpro.method.calls import (
    CALLS,
    OTHERS,
    PUBLISHED_CHUNK_THRESHOLD,
    REGION_KIND,
    UNSCORED,
    VIRUS,
    group_means,
    margin_calls,
)
from virnucpro.method.confidence import summarise_tiers
from virnucpro.method.frames import FRAME_LABELS, FRAME_SETS

if TYPE_CHECKING:
    from virnucpro.method.regions import RegionSummary

log = logging.getLogger("virnucpro")

FRAME_COUNTS = np.array([mask.bit_count() for mask in range(64)], dtype=np.int64)
# The score histogram's bins (report/figures.py draws them), counted while the frames stream past.
SCORE_BINS = np.linspace(0.0, 1.0, 21)
ROWS_PER_BATCH = 65_536  # rows formatted or compared at a time: bounds the memory of text
_BLOCK_BYTES = 1 << 23  # prepare's chunk table is parsed in blocks of this size
_STRING_ARRAY_BYTES = 2**31 - 1  # the most text an Arrow string array holds (int32 offsets)
_FRAME_SET_VALUES = pa.array(FRAME_SETS, type=pa.string())
_LABEL_VALUES = pa.array(FRAME_LABELS, type=pa.string())
_PARSE = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False)
_CHUNK_TABLE_TYPES = {
    "sequence_id": pa.string(),
    "chunk_index": pa.int64(),
    "chunk_id": pa.string(),
    "start": pa.int64(),
    "end": pa.int64(),
    "frames": pa.string(),
}
_SEQUENCE_TABLE_TYPES = {
    "sequence_id": pa.string(),
    "record": pa.int64(),
    "length": pa.int64(),
    "n_chunks": pa.int64(),
}


def exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    """0, counts[0], counts[0] + counts[1], ...: where each group starts; int32 when the total fits
    (half the memory of int64, and no temporary beside it)."""
    total = int(counts.sum(dtype=np.int64)) if len(counts) else 0
    starts = np.zeros(len(counts), dtype=np.int32 if total < 2**31 else np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], dtype=starts.dtype, out=starts[1:])
    return starts


def one_text_array(parts: Sequence[pa.Array]) -> pa.Array:
    """The string arrays as one (large_string past 2 GiB of text). Not a ChunkedArray: its take()
    joins every chunk into one first, a copy of all of the text on each call (256 MB for the ids
    of 10^7 reads, in each writer)."""
    text_bytes = sum(pc.sum(pc.binary_length(part)).as_py() or 0 for part in parts)
    kind = pa.string() if text_bytes <= _STRING_ARRAY_BYTES else pa.large_string()
    return pa.concat_arrays([part.cast(kind) for part in parts]) if parts else pa.array([], kind)


def numbered_texts(texts: pa.Array, separator: str, numbers: np.ndarray) -> pa.Array:
    """`{text}{separator}{number}` of each row, in the type of `texts` (string or large_string)."""
    kind = texts.type
    return pc.binary_join_element_wise(
        texts, pa.scalar(separator, kind), pc.cast(pa.array(numbers), kind), pa.scalar("", kind)
    )


def first_in_lexsort(keys: Sequence[np.ndarray], count: int) -> np.ndarray:
    """The first `count` positions of `np.lexsort(keys)` (the last key primary; ties in position
    order), in that order, without sorting every position: each key in turn narrows the candidates
    to those tied at the count-th place (`np.partition`), so the page's top rows of 10^7 sequences
    need no sort of all of them."""
    keys = [key.view(np.uint8) if key.dtype == np.bool_ else key for key in keys]
    size = len(keys[0]) if keys else 0
    if size <= count:
        return np.lexsort(keys) if size else np.empty(0, dtype=np.int64)
    chosen, candidates, need = [], None, count
    for key in reversed(keys):
        values = key if candidates is None else key[candidates]
        threshold = np.partition(values, need - 1)[need - 1]
        ahead, tied = values < threshold, values == threshold
        chosen.append(np.flatnonzero(ahead) if candidates is None else candidates[ahead])
        need -= len(chosen[-1])
        candidates = np.flatnonzero(tied) if candidates is None else candidates[tied]
        if len(candidates) == need:
            break
    chosen.append(candidates[:need])  # still tied after every key: the earliest positions
    top = np.sort(np.concatenate(chosen))
    return top[np.lexsort([key[top] for key in keys])]


@dataclass
class ChunkTable:
    """Every chunk in input order; unscored chunks (no stop-free frame) hold NaN scores."""

    sequence: np.ndarray  # int32: row of the chunk's sequence in the SequenceTable
    index: np.ndarray  # int32: 1-based chunk number within its sequence
    start: np.ndarray  # int32 (int64 past 2^31): 1-based, inclusive
    end: np.ndarray  # int32 (int64 past 2^31): inclusive
    frame_mask: np.ndarray  # uint8: bit i set when FRAME_LABELS[i] was kept
    best_frame: np.ndarray  # int8: number of the frame with the highest P(virus) (first of equals); -1
    max_others: np.ndarray  # float32: best P(others) over the frames
    max_virus: np.ndarray  # float32: best P(virus) over the frames
    called_viral: np.ndarray  # bool: the chunk's call (margin >= the chunk threshold)
    # Filled by report.annotate:
    tier: np.ndarray | None = None  # uint8: confidence tier (confidence.TIERS)
    estimated_fdr: np.ndarray | None = None  # float32, NaN where not called virus; None uncalibrated

    def __len__(self) -> int:
        return len(self.start)

    @property
    def scored(self) -> np.ndarray:
        return self.frame_mask != 0

    def viral(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """The original's consensus of the rows (False for unscored chunks: NaN compares false),
        whatever the chunk threshold: what prediction_results_highestscore.csv holds."""
        return self.max_virus[rows] >= self.max_others[rows]

    def margin(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """max P(virus) - max P(others) (float32) of the rows: >= 0 exactly when the consensus is
        viral. Asked for a batch of rows where every chunk's would be a temporary too many."""
        return self.max_virus[rows] - self.max_others[rows]

    @property
    def length(self) -> np.ndarray:
        return self.end - self.start + 1


@dataclass
class SequenceTable:
    """Every input sequence in input order, with its chunk counts, best scores and call."""

    ids: pa.Array  # string (large_string past 2 GiB of text): one array, see `one_text_array`
    record: np.ndarray  # int32 (int64 past 2^31): 1-based number in the input
    length: np.ndarray  # int32 (int64 past 2^31)
    n_chunks: np.ndarray  # int32
    chunks_scored: np.ndarray  # int32
    viral_chunks: np.ndarray  # int32
    max_virus: np.ndarray  # float32, NaN when unscored
    mean_virus: np.ndarray  # float32: numpy's float64 mean of the float32 scores, rounded; NaN when unscored
    call: np.ndarray  # uint8: position in CALLS
    # Filled by report.annotate:
    viral_regions: np.ndarray | None = None  # int32
    kind: np.ndarray | None = None  # uint8: position in calls.KINDS
    tier: np.ndarray | None = None  # uint8: its confidence tier for its call (ReportData.sequence_tiers)
    estimated_fdr: np.ndarray | None = None  # float64, NaN where not called virus; None uncalibrated

    def __len__(self) -> int:
        return len(self.record)

    @property
    def first_chunk(self) -> np.ndarray:
        """Row of each sequence's first chunk in the ChunkTable (its chunks follow in order)."""
        return exclusive_cumsum(self.n_chunks)

    def viral_fraction(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """viral / scored chunks (float64) of the rows, NaN when unscored. Of some rows at a time:
        of every sequence it is 8 bytes a sequence, and as many for each temporary."""
        scored, viral = self.chunks_scored[rows], self.viral_chunks[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(scored > 0, viral / scored, np.nan)

    def spans(self, batch: int | None = None) -> Iterator[tuple[slice, slice]]:
        """The sequence rows `batch` (default ROWS_PER_BATCH) at a time, each batch with the rows of
        its chunks."""
        first, batch = 0, batch or ROWS_PER_BATCH
        for low in range(0, len(self), batch):
            rows = slice(low, min(low + batch, len(self)))
            last = first + int(self.n_chunks[rows].sum(dtype=np.int64))
            yield rows, slice(first, last)
            first = last

    def id_list(self, rows: slice) -> list[str]:
        return self.ids.slice(rows.start, rows.stop - rows.start).to_pylist()


# A source of frame rows in chunk-table order: (ids, score_others, score_virus) per batch.
FrameBatches = Callable[[], Iterator[tuple[list[str], np.ndarray, np.ndarray]]]


@dataclass
class ReportData:
    """Everything the text and HTML outputs are made of."""

    sequences: SequenceTable
    chunks: ChunkTable
    frames: int  # frames scored
    frame_histogram: np.ndarray  # count of frames per SCORE_BINS bin of P(virus)
    frame_batches: FrameBatches  # every frame's id and scores again, in input order
    chunk_size: int
    min_viral_fraction: float
    chunk_threshold: float  # on the margin; the published rule is 0
    provenance: dict[str, str]  # classifier and embedding models, from the scores files
    regions: RegionSummary | None = None  # filled by stages.report.add_regions_and_tiers
    settings: dict = field(default_factory=dict)  # how calls, regions and tiers were made (run.json)

    def sequence_tiers(self, rows: slice, chunk_rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """`confidence.summarise_tiers` of the sequences `rows`, whose chunks are `chunk_rows`
        (`SequenceTable.spans`): their tier counts (low, medium, high) and tiers. Made a batch at a
        time when needed: the counts of every sequence would be 12 bytes a sequence, held throughout."""
        chunks = self.chunks
        scored = chunks.frame_mask[chunk_rows] != 0
        owner = chunks.sequence[chunk_rows][scored] - rows.start
        agrees = chunks.called_viral[chunk_rows][scored] == (self.sequences.call[rows] == VIRUS)[owner]
        return summarise_tiers(owner, chunks.tier[chunk_rows][scored], agrees, rows.stop - rows.start)

    def counts(self) -> dict[str, int]:
        calls = np.bincount(self.sequences.call, minlength=len(CALLS))
        scored = int(self.chunks.scored.sum())
        counts = {
            "sequences": len(self.sequences),
            "sequences_virus": calls[VIRUS],
            "sequences_others": calls[OTHERS],
            "sequences_unscored": calls[UNSCORED],
            "chunks": len(self.chunks),
            "chunks_scored": scored,
            "chunks_virus": int(self.chunks.called_viral.sum()),
            "chunks_without_frames": len(self.chunks) - scored,
            "frames": self.frames,
        }
        if self.regions is not None and self.sequences.kind is not None:
            counts["viral_regions"] = len(self.regions.table)
            counts["sequences_with_viral_regions"] = int((self.sequences.viral_regions > 0).sum())
            counts["sequences_region_only"] = int((self.sequences.kind == REGION_KIND).sum())
        return {key: int(value) for key, value in counts.items()}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def hand_back_freed_memory() -> None:
    """Make freed memory go back to the system rather than stay with the process: the report's
    blocks allocate and free hundreds of megabytes in turn, and by default Arrow's allocator keeps
    what was freed, and glibc's raises its mmap threshold after the first large free and then
    serves blocks from a heap it seldom trims. Peak RSS at 10^6 reads: 448 MB before, 353 after."""
    import ctypes
    import ctypes.util

    pa.set_memory_pool(pa.system_memory_pool())
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(_M_MMAP_THRESHOLD, 1 << 16)
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 20)
    except OSError:
        pass  # not glibc: its own defaults


def read_report_data(
    prepared: str | Path,
    score_files: Sequence[str | Path],
    min_viral_fraction: float,
    chunk_threshold: float = PUBLISHED_CHUNK_THRESHOLD,
) -> ReportData:
    """Join the prepared chunk table with every frame's scores and call chunks and sequences."""
    hand_back_freed_memory()
    prepared = Path(prepared)
    summary = read_summary(prepared)
    if summary is None:
        raise InputError(f"{prepared}: not a finished prepare folder (no readable prepare.json)")
    files = sorted(map(Path, score_files), key=lambda p: p.name)
    sequences = _read_sequence_table(PrepareLayout(prepared).input_sequences)
    try:
        source: _ScoresInOrder | _ScoresById = _ScoresInOrder(files)
        chunks, histogram = _scan(prepared, sequences, source)
        frame_batches = source.batches
    except _NotInOrder:
        log.info("report: the score files are not in the order of the chunk table; joining them by id")
        source = _ScoresById(files)
        chunks, histogram = _scan(prepared, sequences, source)
        source.check_complete(prepared)
        frame_batches = source.batches
    chunks.called_viral[:] = margin_calls(chunks.margin(), chunk_threshold)
    _summarise_sequences(sequences, chunks, min_viral_fraction)
    return ReportData(
        sequences=sequences,
        chunks=chunks,
        frames=int(histogram.sum()),
        frame_histogram=histogram,
        frame_batches=frame_batches,
        chunk_size=summary.chunk_size,
        min_viral_fraction=min_viral_fraction,
        chunk_threshold=chunk_threshold,
        provenance=source.provenance,
    )


def _read_sequence_table(path: Path) -> SequenceTable:
    """Prepare's sequence table, block by block into its columns (no whole-file Arrow table beside
    them: at 10^7 reads that copy was half a gigabyte)."""
    ids, record, length, n_chunks = [], [], [], []
    for batch in _table_batches(path, _SEQUENCE_TABLE_TYPES):
        ids.append(batch.column("sequence_id"))
        record.append(batch.column("record").to_numpy())
        length.append(batch.column("length").to_numpy())
        n_chunks.append(batch.column("n_chunks").to_numpy().astype(np.int32))
    n = sum(len(part) for part in record)
    return SequenceTable(
        ids=one_text_array(ids),
        record=_narrow(record),
        length=_narrow(length),
        n_chunks=np.concatenate(n_chunks) if n_chunks else np.zeros(0, np.int32),
        chunks_scored=np.zeros(n, dtype=np.int32),
        viral_chunks=np.zeros(n, dtype=np.int32),
        max_virus=np.full(n, np.nan, dtype=np.float32),
        mean_virus=np.full(n, np.nan, dtype=np.float32),
        call=np.zeros(n, dtype=np.uint8),
    )


def _narrow(parts: list[np.ndarray]) -> np.ndarray:
    """The parts as one array, int32 when every value fits (reads, contigs), else int64."""
    values = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return values.astype(np.int32) if not values.size or values.max() < 2**31 else values


def _table_batches(path: Path, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    """A prepare table in blocks of about _BLOCK_BYTES cut at line ends (Arrow's own streaming CSV
    reader reads the whole file ahead)."""
    try:
        with open(path, "rb") as handle:
            names = handle.readline().decode("utf-8").rstrip("\r\n").split("\t")
            options = {
                "read_options": pacsv.ReadOptions(column_names=names, use_threads=False),
                "parse_options": _PARSE,
                "convert_options": pacsv.ConvertOptions(column_types=types, include_columns=list(types)),
            }
            rest = b""
            while block := handle.read(_BLOCK_BYTES):
                block = rest + block
                cut = block.rfind(b"\n") + 1
                rest = block[cut:]
                if cut:
                    yield from pacsv.read_csv(pa.BufferReader(block[:cut]), **options).to_batches()
            if rest:
                yield from pacsv.read_csv(pa.BufferReader(rest), **options).to_batches()
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err})") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError, UnicodeDecodeError, KeyError) as err:
        raise InputError(f"{path}: not a prepare table ({err})") from None


def _scan(prepared: Path, sequences: SequenceTable, scores) -> tuple[ChunkTable, np.ndarray]:
    """Read the chunk table block by block, each with its frames' scores; per chunk the best scores."""
    path = PrepareLayout(prepared).chunk_frames
    n_chunks = int(sequences.n_chunks.sum(dtype=np.int64))
    first_chunk = sequences.first_chunk
    chunk_ends = first_chunk + sequences.n_chunks
    positions = sequences.length.dtype  # a chunk's start and end lie within its sequence
    chunks = ChunkTable(
        sequence=np.empty(n_chunks, dtype=np.int32),
        index=np.empty(n_chunks, dtype=np.int32),
        start=np.empty(n_chunks, dtype=positions),
        end=np.empty(n_chunks, dtype=positions),
        frame_mask=np.zeros(n_chunks, dtype=np.uint8),
        best_frame=np.full(n_chunks, -1, dtype=np.int8),
        max_others=np.full(n_chunks, np.nan, dtype=np.float32),
        max_virus=np.full(n_chunks, np.nan, dtype=np.float32),
        called_viral=np.zeros(n_chunks, dtype=bool),
    )
    histogram = np.zeros(len(SCORE_BINS) - 1, dtype=np.int64)
    row = 0
    for batch in _table_batches(path, _CHUNK_TABLE_TYPES):
        n = batch.num_rows
        if row + n > n_chunks:
            raise InputError(f"{path}: more chunks than {INPUT_SEQUENCES_TSV} counts ({n_chunks})")
        rows = slice(row, row + n)
        sequence = np.searchsorted(chunk_ends, np.arange(row, row + n), side="right")
        index = np.arange(row, row + n) - first_chunk[sequence] + 1
        chunk_ids = batch.column("chunk_id")
        sequence_ids = sequences.ids.take(sequence)
        expected_ids = numbered_texts(sequence_ids, "_chunk_", index)
        if not (
            pc.all(pc.equal(batch.column("sequence_id"), sequence_ids)).as_py()
            and np.array_equal(batch.column("chunk_index").to_numpy(), index)
            and pc.all(pc.equal(chunk_ids, expected_ids)).as_py()
        ):
            raise InputError(
                f"{path}: its chunks are not those {INPUT_SEQUENCES_TSV} lists (rows {row + 1}-)"
            )
        masks = pc.index_in(batch.column("frames"), value_set=_FRAME_SET_VALUES)
        if masks.null_count:
            bad = batch.column("frames").filter(masks.is_null()).to_pylist()
            raise InputError(f"{path}: unknown frames {abbreviated_ids(bad)}")
        mask = masks.to_numpy().astype(np.uint8)
        chunks.sequence[rows] = sequence
        chunks.index[rows] = index
        chunks.start[rows] = batch.column("start").to_numpy()
        chunks.end[rows] = batch.column("end").to_numpy()
        chunks.frame_mask[rows] = mask

        # Frames of the block, chunk by chunk, F1..R3 within a chunk (the shards' order).
        frame_chunk, frame_label = np.nonzero((mask[:, None] >> np.arange(6, dtype=np.uint8)) & 1)
        if frame_chunk.size:
            frame_ids = pc.binary_join_element_wise(
                chunk_ids.take(frame_chunk), _LABEL_VALUES.take(frame_label), ""
            )
            others, virus = scores.take(frame_ids)
            histogram += np.histogram(virus, SCORE_BINS)[0]
            _best_scores(chunks, rows, mask, frame_label, others, virus)
        row += n
    if row != n_chunks:
        raise InputError(f"{path}: {row} chunks, but {INPUT_SEQUENCES_TSV} counts {n_chunks}")
    scores.finish()
    return chunks, histogram


def _best_scores(chunks: ChunkTable, rows: slice, mask, frame_label, others, virus) -> None:
    """Each scored chunk's best P(others), best P(virus) and the (first) frame holding the latter."""
    scored = np.flatnonzero(mask)
    n_frames = FRAME_COUNTS[mask[scored]]
    starts = np.cumsum(n_frames) - n_frames
    max_others = np.maximum.reduceat(others, starts)
    max_virus = np.maximum.reduceat(virus, starts)
    at_max = np.flatnonzero(virus == np.repeat(max_virus, n_frames))
    best = at_max[np.searchsorted(at_max, starts)]  # every chunk holds its maximum
    offset = rows.start
    chunks.max_others[offset + scored] = max_others
    chunks.max_virus[offset + scored] = max_virus
    chunks.best_frame[offset + scored] = frame_label[best]


def _summarise_sequences(sequences: SequenceTable, chunks: ChunkTable, min_viral_fraction: float) -> None:
    """Per sequence: scored and viral chunks, best and mean P(virus), call; a batch of sequences
    (and their chunks) at a time, so the temporaries do not grow with the input."""
    for rows, chunk_rows in sequences.spans():
        n = rows.stop - rows.start
        owner = chunks.sequence[chunk_rows] - rows.start
        scored = chunks.frame_mask[chunk_rows] != 0
        counts = sequences.chunks_scored[rows]  # views: filled in place
        counts[:] = np.bincount(owner[scored], minlength=n)
        sequences.viral_chunks[rows] = np.bincount(owner[chunks.called_viral[chunk_rows]], minlength=n)
        scored_sequences = np.flatnonzero(counts)
        if scored_sequences.size:
            # Each group runs from a scored sequence's first chunk to the next one's; the chunks of
            # unscored sequences between them hold NaN, which fmax skips.
            max_virus = chunks.max_virus[chunk_rows]
            sequences.max_virus[rows][scored_sequences] = np.fmax.reduceat(
                max_virus, exclusive_cumsum(sequences.n_chunks[rows])[scored_sequences]
            )
            sequences.mean_virus[rows][scored_sequences] = group_means(
                max_virus[scored], counts[scored_sequences]
            )
        calls = sequences.call[rows]
        calls[:] = OTHERS
        calls[sequences.viral_fraction(rows) >= min_viral_fraction] = VIRUS  # NaN compares false
        calls[counts == 0] = UNSCORED


class _NotInOrder(Exception):
    """The score files, read in name order, do not follow the chunk table."""


class _ScoresInOrder:
    """Score files read one after another; `take(ids)` returns the next rows if they hold `ids`."""

    def __init__(self, files: list[Path]):
        self.files = files
        self._pending = iter(files)
        self._ids: pa.Array = pa.array([], pa.string())
        self._others = self._virus = np.empty(0, np.float32)
        self.provenance: dict[str, str] = {}

    def _read_next(self) -> bool:
        path = next(self._pending, None)
        if path is None:
            return False
        table = _read_score_file(path)
        if not self.provenance:
            self.provenance = _provenance(table.metadata)
        self._ids = pa.concat_arrays([self._ids, pa.array(table.ids, pa.string())])
        self._others = np.concatenate([self._others, table.score_others])
        self._virus = np.concatenate([self._virus, table.score_virus])
        return True

    def take(self, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        n = len(ids)
        while len(self._ids) < n:
            if not self._read_next():
                raise _NotInOrder
        if not pc.all(pc.equal(self._ids.slice(0, n), ids)).as_py():
            raise _NotInOrder
        others, virus = self._others[:n], self._virus[:n]
        self._ids, self._others, self._virus = self._ids.slice(n), self._others[n:], self._virus[n:]
        return others, virus

    def finish(self) -> None:
        if len(self._ids) or self._read_next():
            raise _NotInOrder

    def batches(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        for path in self.files:
            table = _read_score_file(path)
            yield table.ids, table.score_others, table.score_virus


class _ScoresById:
    """Every score file in memory, looked up by frame id (files in another order than the shards)."""

    def __init__(self, files: list[Path]):
        self.ids: list[str] = []
        self.position: dict[str, int] = {}
        others, virus = [], []
        self.provenance: dict[str, str] = {}
        for path in files:
            table = _read_score_file(path)
            if not self.provenance:
                self.provenance = _provenance(table.metadata)
            duplicates = [i for i in table.ids if i in self.position]
            if duplicates:
                raise InputError(f"{path}: ids already scored in another file: {abbreviated_ids(duplicates)}")
            self.position.update(
                zip(table.ids, range(len(self.ids), len(self.ids) + len(table.ids)), strict=True)
            )
            if len(self.position) != len(self.ids) + len(table.ids):
                raise InputError(f"{path}: ids scored more than once in this file")
            self.ids += table.ids
            others.append(table.score_others)
            virus.append(table.score_virus)
        self.others = np.concatenate([np.empty(0, np.float32), *others])
        self.virus = np.concatenate([np.empty(0, np.float32), *virus])
        self.order: list[np.ndarray] = []  # positions of the chunk table's frames, in its order
        self.missing: list[str] = []

    def take(self, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        wanted = ids.to_pylist()
        found = [self.position.get(i, -1) for i in wanted]
        self.missing += [i for i, p in zip(wanted, found, strict=True) if p < 0]
        order = np.array(found, dtype=np.int64)
        self.order.append(order)
        if not self.ids:
            return np.zeros(len(order), np.float32), np.zeros(len(order), np.float32)
        # A missing id reads row 0 for now; check_complete reports it before anything is written.
        return self.others[np.maximum(order, 0)], self.virus[np.maximum(order, 0)]

    def finish(self) -> None:
        pass

    def check_complete(self, prepared: Path) -> None:
        if self.missing:
            raise InputError(
                f"{prepared}: frames without a score in the scores files: {abbreviated_ids(self.missing)}"
            )
        used = np.zeros(len(self.ids), dtype=bool)
        for order in self.order:
            used[order] = True
        if not used.all():
            extra = sorted(self.ids[i] for i in np.flatnonzero(~used).tolist())
            raise InputError(f"scores for frames that {prepared} does not hold: {abbreviated_ids(extra)}")

    def batches(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        for order in self.order:
            yield [self.ids[i] for i in order.tolist()], self.others[order], self.virus[order]


def _read_score_file(path: Path):
    try:
        table = read_scores(path)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not a readable scores file ({err})") from None
    if np.isnan(table.score_others).any() or np.isnan(table.score_virus).any():
        raise InputError(f"{path}: holds scores that are not numbers (NaN)")
    return table


# Metadata of one score file that describes that file, not the run (row counts, file hashes).
_PER_FILE_KEYS = {"rows", "source_sha256", "dnabert_sha256", "esm_sha256", "metadata_sha256"}


def _provenance(metadata: dict[str, str]) -> dict[str, str]:
    """The models behind the scores, from a score file's metadata."""
    return {k: v for k, v in metadata.items() if k.split(".")[-1] not in _PER_FILE_KEYS}
