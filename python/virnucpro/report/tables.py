"""The report's tables and sequence files, written from the report's data (`data`) a batch of
ROWS_PER_BATCH rows at a time, so the text of a file is never held whole.

- `prediction_results.txt` and `prediction_results_highestscore.csv`: the original tool's files,
  byte for byte in its layout (tab-separated; floats as numpy prints float32 scalars; True/False),
  always by the original's consensus, whatever the calibration;
- `chunks.tsv`: every chunk, also those without a stop-free frame, with its best scores, margin,
  call, confidence tier and (calibrated) estimated FDR;
- `sequences.tsv`: every input sequence with its chunk counts, viral fraction, call, viral regions,
  kind, confidence tiers and (calibrated) estimated FDR;
- `viral_regions.tsv`, `.bed` and `.fa`: the viral regions of every sequence (see `method.regions`);
- `viral.fa`: the input sequences called viral.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro.errors import InputError
from virnucpro.files.atomic import atomic_open
from virnucpro.files.prepared import CHUNK_FRAMES_COLUMNS
from virnucpro.files.sequences import SequenceInputs
from virnucpro.method.calls import CALLS, KINDS, OTHERS, UNSCORED, VIRUS
from virnucpro.method.confidence import TIERS
from virnucpro.method.frames import FRAME_LABELS, FRAME_SETS
from virnucpro.method.regions import region_tiers
from virnucpro.report.data import FRAME_COUNTS, ROWS_PER_BATCH, ReportData, numbered_texts, one_text_array

CHUNK_COLUMNS = (
    *CHUNK_FRAMES_COLUMNS,  # prepare's chunk table, then the scores and calls
    "best_frame",
    "max_score_others",
    "max_score_virus",
    "call",
    "reason",
    "margin",
    "confidence",
    "estimated_fdr",
)
SEQUENCE_COLUMNS = (
    "sequence_id",
    "record",
    "length",
    "n_chunks",
    "chunks_scored",
    "viral_chunks",
    "viral_fraction",
    "max_score_virus",
    "mean_score_virus",
    "call",
    "viral_regions",
    "kind",
    "share_high",
    "share_medium",
    "share_low",
    "confidence",
    "estimated_fdr",
)
REGION_COLUMNS = (
    "sequence_id",
    "region",
    "start",
    "end",
    "length",
    "viral_chunks",
    "scored_chunks",
    "mean_score_virus",
    "min_score_virus",
    "fraction_of_sequence",
    "share_high",
    "share_medium",
    "share_low",
    "confidence",
)
NO_FRAME_REASON = "no stop-free frame"
_BEST_FRAME_TEXT = ("", *FRAME_LABELS)  # indexed by best_frame + 1 (-1: unscored)


def float32_text(value: float) -> str:
    """A float32 as numpy prints it (`str(np.float32(x))`): what the original wrote."""
    return str(np.float32(value))


def float32_texts(values: np.ndarray) -> list[str]:
    """`float32_text` of each value (float32 array); NaN (no value) gives an empty field."""
    return ["" if text == "nan" else text for text in map(str, values.astype(np.float32, copy=False))]


def fixed_texts(values: np.ndarray) -> list[str]:
    """Values with 4 decimals (as f"{value:.4f}"); NaN gives an empty field. Shares and fractions
    repeat (0, 1, 1/2 ...): each distinct value is formatted once."""
    distinct, position = np.unique(values, return_inverse=True)  # NaNs are one value
    texts = np.array(["" if value != value else f"{value:.4f}" for value in distinct.tolist()], dtype=object)
    return texts[position.reshape(-1)].tolist()


def share_texts(tier_counts: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    """Shares of high, medium and low chunks from counts (n, 3: low, medium, high)."""
    scored = tier_counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(scored[:, None] > 0, tier_counts / scored[:, None], np.nan)
    return fixed_texts(share[:, 2]), fixed_texts(share[:, 1]), fixed_texts(share[:, 0])


def _optional(values: np.ndarray | None, rows: slice) -> list[str]:
    """Estimated FDRs of the rows, or empty fields without a calibration."""
    return fixed_texts(values[rows]) if values is not None else [""] * (rows.stop - rows.start)


def _batches(count: int) -> Iterable[slice]:
    return (slice(low, min(low + ROWS_PER_BATCH, count)) for low in range(0, count, ROWS_PER_BATCH))


def write_prediction_results(data: ReportData, path: Path) -> None:
    """The original's per-frame file: argmax of the probabilities, `others` on a tie (torch.max)."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("Sequence_ID\tPrediction\tscore1\tscore2\n")
        for ids, others, virus in data.frame_batches():
            predictions = np.where(virus > others, "virus", "others").tolist()
            out.writelines(
                f"{frame_id}\t{prediction}\t{score1}\t{score2}\n"
                for frame_id, prediction, score1, score2 in zip(
                    ids, predictions, map(str, others), map(str, virus), strict=True
                )
            )


def chunk_ids(data: ReportData, rows: np.ndarray) -> pa.Array:
    """`{sequence_id}_chunk_{k}` of the given chunks, as prepare names them."""
    chunks = data.chunks
    return one_text_array(
        [
            numbered_texts(
                data.sequences.ids.take(chunks.sequence[rows[part]]), "_chunk_", chunks.index[rows[part]]
            )
            for part in _batches(len(rows))
        ]
    )


def suffixed_order(ids: pa.Array, suffix: str) -> np.ndarray:
    """Positions of `ids` in the order of `id + suffix` as text, like Python's sorted() (Arrow
    compares UTF-8 bytes: code point order). That is the ids' own order except among an id and the
    ids it is a prefix of (`read_1`, `read_10`, `read_1.5`), which follow it in that order: each
    such run is sorted again with the suffix. Only the sort indices are made for every id."""
    order = pc.sort_indices(ids).to_numpy()
    runs, head, start, previous, position = [], None, 0, None, 0
    for low in range(0, len(order), ROWS_PER_BATCH):
        for text in ids.take(order[low : low + ROWS_PER_BATCH]).to_pylist():
            if head is not None and not text.startswith(head):
                runs.append((start, position))
                head = None
            if head is None and previous is not None and text.startswith(previous):
                head, start = previous, position - 1
            previous = text
            position += 1
    if head is not None:
        runs.append((start, position))
    if runs:
        order = order.copy()  # Arrow's indices are read-only
    for low, high in runs:
        texts = [text + suffix for text in ids.take(order[low:high]).to_pylist()]
        order[low:high] = order[low:high][sorted(range(high - low), key=texts.__getitem__)]
    return order


def _ids_hold_chunk_marker(ids: pa.Array) -> bool:
    """Whether an id holds `_chunk_` or ends in `_chunk`: then a sequence's chunk ids can
    interleave with another's. Checked a batch at a time."""
    return any(
        pc.any(
            pc.match_substring(
                pc.binary_join_element_wise(
                    ids.slice(low, ROWS_PER_BATCH), pa.scalar("_chunk", ids.type), pa.scalar("", ids.type)
                ),
                "_chunk_",
            )
        ).as_py()
        for low in range(0, len(ids), ROWS_PER_BATCH)
    )


def highest_score_batches(data: ReportData) -> Iterator[np.ndarray]:
    """Rows of the scored chunks sorted by chunk id as text, like Python's sorted() (the original's
    pandas groupby), a batch at a time.

    Every id of a sequence's chunks starts with the same prefix, `{sequence_id}_chunk_`, followed by
    the number. When no prefix is the start of another one (which needs a sequence id holding
    `_chunk_`), ids sort by prefix (`suffixed_order`), then by number as text, so the sequences are
    taken in that order and each one's chunks in the text order of their numbers; otherwise the
    chunk ids themselves are sorted.
    """
    chunks, sequences = data.chunks, data.sequences
    if not len(chunks):
        return
    if _ids_hold_chunk_marker(sequences.ids):
        scored = np.flatnonzero(chunks.scored)
        ordered = scored[pc.sort_indices(chunk_ids(data, scored)).to_numpy()]
        yield from (ordered[part] for part in _batches(len(ordered)))
        return
    numbers = np.arange(1, int(sequences.n_chunks.max()) + 1)
    number_rank = np.empty(len(numbers) + 1, dtype=np.int64)
    number_rank[np.argsort(numbers.astype(str), kind="stable") + 1] = np.arange(len(numbers))
    sequence_order = suffixed_order(sequences.ids, "_chunk_")
    first = sequences.first_chunk
    for chosen in _sequence_batches(sequence_order, sequences.n_chunks):
        counts = sequences.n_chunks[chosen].astype(np.int64)
        # each sequence's chunks, numbered 1..n, in the text order of their numbers
        owner = np.repeat(np.arange(len(chosen)), counts)
        number = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        in_order = np.lexsort((number_rank[number], owner))
        rows = first[chosen][owner[in_order]] + number[in_order] - 1
        yield rows[chunks.frame_mask[rows] != 0]


def _sequence_batches(order: np.ndarray, n_chunks: np.ndarray) -> Iterator[np.ndarray]:
    """`order` (sequence rows) in batches of about ROWS_PER_BATCH chunks (a longer sequence alone)."""
    for part in _batches(len(order)):
        chosen = order[part]
        ends = np.cumsum(n_chunks[chosen], dtype=np.int64)
        if not len(ends) or ends[-1] <= 4 * ROWS_PER_BATCH:
            yield chosen
            continue
        cuts = (
            np.searchsorted(ends, np.arange(ROWS_PER_BATCH, int(ends[-1]), ROWS_PER_BATCH), side="left") + 1
        )
        yield from (piece for piece in np.split(chosen, np.unique(cuts)) if len(piece))


def write_highest_score(data: ReportData, path: Path) -> None:
    """The original's per-chunk consensus: scored chunks, sorted by id as text (pandas groupby)."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("Modified_ID\tIs_Virus\n")
        for rows in highest_score_batches(data):
            out.writelines(
                f"{chunk_id}\t{flag}\n"
                for chunk_id, flag in zip(
                    chunk_ids(data, rows).to_pylist(),
                    data.chunks.viral(rows).tolist(),
                    strict=True,
                )
            )


def write_chunks(data: ReportData, path: Path) -> None:
    # Calls and margins are computed a batch at a time: whole-table temporaries of every chunk
    # were the largest part of this writer's memory at 10^7 chunks.
    chunks = data.chunks
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(CHUNK_COLUMNS) + "\n")
        for rows in _batches(len(chunks)):
            sequence_ids = data.sequences.ids.take(chunks.sequence[rows]).to_pylist()
            masks = chunks.frame_mask[rows]
            calls = np.where(masks != 0, np.where(chunks.called_viral[rows], VIRUS, OTHERS), UNSCORED)
            out.writelines(
                f"{sequence_id}\t{index}\t{sequence_id}_chunk_{index}\t{start}\t{end}\t{end - start + 1}\t"
                f"{FRAME_COUNTS[mask]}\t{FRAME_SETS[mask]}\t{_BEST_FRAME_TEXT[best + 1]}\t{others}\t{virus}\t"
                f"{CALLS[call]}\t{NO_FRAME_REASON if not mask else ''}\t{margin}\t{TIERS[tier]}\t{fdr}\n"
                for sequence_id, index, start, end, mask, best, others, virus, call, margin, tier, fdr in zip(
                    sequence_ids,
                    chunks.index[rows].tolist(),
                    chunks.start[rows].tolist(),
                    chunks.end[rows].tolist(),
                    masks.tolist(),
                    chunks.best_frame[rows].tolist(),
                    float32_texts(chunks.max_others[rows]),
                    float32_texts(chunks.max_virus[rows]),
                    calls.tolist(),
                    float32_texts(chunks.margin(rows)),
                    chunks.tier[rows].tolist(),
                    _optional(chunks.estimated_fdr, rows),
                    strict=True,
                )
            )


def write_sequences(data: ReportData, path: Path) -> None:
    sequences = data.sequences
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(SEQUENCE_COLUMNS) + "\n")
        for rows, chunk_rows in sequences.spans():
            high, medium, low = share_texts(data.sequence_tiers(rows, chunk_rows)[0])
            out.writelines(
                f"{sequence_id}\t{record}\t{length}\t{n_chunks}\t{scored}\t{viral}\t"
                f"{fraction}\t{best}\t{mean}\t{CALLS[call]}\t"
                f"{regions}\t{KINDS[kind]}\t{share_high}\t{share_medium}\t{share_low}\t{TIERS[tier]}\t{fdr}\n"
                for (
                    sequence_id, record, length, n_chunks, scored, viral, fraction, best, mean, call, regions, kind,
                    share_high, share_medium, share_low, tier, fdr,
                ) in zip(
                    sequences.id_list(rows),
                    sequences.record[rows].tolist(),
                    sequences.length[rows].tolist(),
                    sequences.n_chunks[rows].tolist(),
                    sequences.chunks_scored[rows].tolist(),
                    sequences.viral_chunks[rows].tolist(),
                    fixed_texts(sequences.viral_fraction(rows)),  # NaN (unscored): empty
                    float32_texts(sequences.max_virus[rows]),
                    float32_texts(sequences.mean_virus[rows]),
                    sequences.call[rows].tolist(),
                    sequences.viral_regions[rows].tolist(),
                    sequences.kind[rows].tolist(),
                    high,
                    medium,
                    low,
                    sequences.tier[rows].tolist(),
                    _optional(sequences.estimated_fdr, rows),
                    strict=True,
                )
            )  # fmt: skip


def bed_scores(mean_virus: np.ndarray) -> np.ndarray:
    """BED scores 0 to 1000: the region's mean P(virus) times 1000, rounded half up."""
    return np.clip(np.floor(mean_virus * 1000 + 0.5), 0, 1000).astype(np.int64)


def write_regions(data: ReportData, tsv_path: Path, bed_path: Path) -> None:
    """viral_regions.tsv (1-based, inclusive, like chunks.tsv) and viral_regions.bed (BED6, 0-based,
    half-open; name `SEQ|region_N`, score from the mean P(virus), no strand)."""
    summary, sequences = data.regions, data.sequences
    table, scored = summary.table, data.chunks.scored
    with (
        atomic_open(tsv_path, "w", encoding="utf-8", newline="\n") as tsv,
        atomic_open(bed_path, "w", encoding="utf-8", newline="\n") as bed,
    ):
        tsv.write("\t".join(REGION_COLUMNS) + "\n")
        for rows in _batches(len(table)):
            ids = sequences.ids.take(table.sequence[rows]).to_pylist()
            numbers, starts, ends = (
                table.number[rows].tolist(),
                table.start[rows].tolist(),
                table.end[rows].tolist(),
            )
            counts = region_tiers(table.part(rows), scored, data.chunks.tier, data.chunks.called_viral)[0]
            high, medium, low = share_texts(counts)
            fraction = (table.end[rows] - table.start[rows] + 1) / sequences.length[table.sequence[rows]]
            scores = bed_scores(summary.mean_virus[rows])
            tsv.writelines(
                f"{sequence_id}\t{number}\t{start}\t{end}\t{end - start + 1}\t{viral}\t{scored}\t{mean}\t"
                f"{minimum}\t{share_of_sequence}\t{share_high}\t{share_medium}\t{share_low}\t{TIERS[tier]}\n"
                for (
                    sequence_id, number, start, end, viral, scored, mean, minimum, share_of_sequence, share_high,
                    share_medium, share_low, tier,
                ) in zip(
                    ids, numbers, starts, ends,
                    table.viral_chunks[rows].tolist(),
                    summary.scored_chunks[rows].tolist(),
                    float32_texts(summary.mean_virus[rows]),
                    float32_texts(summary.min_virus[rows]),
                    fixed_texts(fraction),
                    high, medium, low,
                    summary.tier[rows].tolist(),
                    strict=True,
                )
            )  # fmt: skip
            bed.writelines(
                f"{sequence_id}\t{start - 1}\t{end}\t{sequence_id}|region_{number}\t{score}\t.\n"
                for sequence_id, number, start, end, score in zip(
                    ids, numbers, starts, ends, scores.tolist(), strict=True
                )
            )


def _sequence_rows(data: ReportData) -> Iterator[tuple[str, int, range]]:
    """(id, call, its rows in the region table) of every sequence in input order."""
    sequences = data.sequences
    done = 0  # regions of the sequences before the batch
    for rows, _ in sequences.spans():
        counts = sequences.viral_regions[rows]
        ends = done + np.cumsum(counts, dtype=np.int64)
        yield from zip(
            sequences.id_list(rows),
            sequences.call[rows].tolist(),
            map(range, (ends - counts).tolist(), ends.tolist()),
            strict=True,
        )
        done = int(ends[-1])


def write_fastas(data: ReportData, inputs: Sequence[Path], viral_path: Path, regions_path: Path) -> None:
    """viral.fa: the input records called viral, unwrapped, with their whole header line; and
    viral_regions.fa: each viral region's bases, `>SEQ|region_N|START-END`. One pass over the
    inputs, read in prepare's order."""
    table = data.regions.table
    listed = _sequence_rows(data)
    source = SequenceInputs(inputs)
    count = 0
    with (
        atomic_open(viral_path, "w", encoding="utf-8", newline="\n") as viral_out,
        atomic_open(regions_path, "w", encoding="utf-8", newline="\n") as regions_out,
    ):
        # Ids are not collected to check for duplicates again: prepare did, and each record's id
        # is compared with the prepared table's, in order.
        for record in source.records(check_duplicates=False):
            count += 1
            seq_id, call, region_rows = next(listed, (None, UNSCORED, range(0)))
            if seq_id != record.id:
                raise source.files[record.file - 1].error(
                    "is not the input the prepare folder was made from; give the same --input files, "
                    "in the same order",
                    record.number,
                    record.id,
                )
            if call == VIRUS:
                viral_out.write(f">{record.header}\n{record.sequence}\n")
            for row in region_rows:
                start, end = int(table.start[row]), int(table.end[row])
                regions_out.write(f">{seq_id}|region_{table.number[row]}|{start}-{end}\n")
                regions_out.write(record.sequence[start - 1 : end])
                regions_out.write("\n")
        if count != len(data.sequences):
            names = ", ".join(file.name for file in source.files)
            raise InputError(f"{names}: {count} records, but the prepare folder lists {len(data.sequences)}")
