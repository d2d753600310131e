"""The `report` stage: per-frame scores to the final outputs (design section 5).

- `prediction_results.txt` and `prediction_results_highestscore.csv`: the original tool's files,
  byte for byte in its layout (tab-separated; floats as numpy prints float32 scalars; True/False),
  always by the original's consensus, whatever the calibration;
- `chunks.tsv`: every chunk, also those without a stop-free frame, with its best scores, margin,
  call, confidence tier and (calibrated) estimated FDR;
- `sequences.tsv`: every input sequence with its chunk counts, viral fraction, call, viral regions,
  kind, confidence tiers and (calibrated) estimated FDR;
- `viral_regions.tsv`, `.bed` and `.fa`: the viral regions of every sequence (see `regions`);
- `viral.fa`: the input sequences called viral;
- `report.html` with `score_histogram.png` and `sequence_tracks.png` (see `report_html`);
- `run.json`: parameters, the thresholds the calls used, models, versions, counts and timings.

The data are columns (`report_data`); every file is written ROWS_PER_BATCH rows at a time, so the
text of a file is never held whole.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro import __version__
from virnucpro.defaults import (
    DEFAULT_CONFIDENCE_HIGH,
    DEFAULT_CONFIDENCE_MEDIUM,
    DEFAULT_MIN_VIRAL_FRACTION,
    DEFAULT_REGION_MAX_GAP,
    DEFAULT_REGION_MIN_CHUNKS,
    DEFAULT_TARGET_FDR,
)
from virnucpro.errors import InputError
from virnucpro.files.atomic import atomic_open
from virnucpro.files.checksums import file_sha256
from virnucpro.files.layout import (
    CHUNKS_TSV,
    HIGHEST_SCORE,
    PREDICTION_RESULTS,
    RUN_JSON,
    SEQUENCES_TSV,
    VIRAL_FASTA,
    VIRAL_REGIONS_BED,
    VIRAL_REGIONS_FASTA,
    VIRAL_REGIONS_TSV,
)
from virnucpro.files.outdir import begin_final_outputs, check_final_outputs
from virnucpro.files.prepared import CHUNK_FRAMES_COLUMNS, read_summary
from virnucpro.files.sequences import SequenceInputs, is_stream
from virnucpro.method.calibration import (
    CHUNK_THRESHOLDS,
    SEQUENCE_THRESHOLDS,
    Calibration,
    check_target,
    load_calibration,
)
from virnucpro.method.calls import CALLS, KINDS, OTHERS, PUBLISHED_CHUNK_THRESHOLD, UNSCORED, VIRUS
from virnucpro.method.confidence import TIERS, check_thresholds, chunk_tiers, summarise_tiers
from virnucpro.method.frames import FRAME_LABELS, FRAME_SETS
from virnucpro.method.regions import call_regions, sequence_kinds, summarise_regions
from virnucpro.method.regions import check_parameters as check_region_parameters
from virnucpro.progress import progress_task
from virnucpro.report.data import FRAME_COUNTS, ROWS_PER_BATCH, ReportData, collect

log = logging.getLogger("virnucpro")

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


@dataclass(frozen=True)
class ReportOptions:
    """How sequences are called (the share of viral chunks), viral regions, confidence tiers and
    calibration; none but the share changes the original's two files. Without a calibration the
    calls follow the published rule."""

    min_viral_fraction: float = DEFAULT_MIN_VIRAL_FRACTION
    region_max_gap: int = DEFAULT_REGION_MAX_GAP
    region_min_chunks: int = DEFAULT_REGION_MIN_CHUNKS
    confidence_high: float = DEFAULT_CONFIDENCE_HIGH
    confidence_medium: float = DEFAULT_CONFIDENCE_MEDIUM
    target_fdr: float = DEFAULT_TARGET_FDR
    calibration: str | Path | None = None  # a calibration.json of `virnucpro calibrate`

    def check(self) -> tuple[Calibration, str] | None:
        """Refuse a bad value (one line) before any work starts; the calibration and its SHA-256."""
        if not 0.0 <= self.min_viral_fraction <= 1.0:
            raise InputError(f"--min-viral-fraction must be between 0 and 1, not {self.min_viral_fraction}")
        check_region_parameters(self.region_max_gap, self.region_min_chunks)
        check_thresholds(self.confidence_high, self.confidence_medium)
        check_target(self.target_fdr)
        if self.calibration is None:
            return None
        calibration, sha256 = load_calibration(self.calibration)
        calibration.thresholds(self.target_fdr, str(self.calibration))  # one meets the target
        return calibration, sha256

    def parameters(self) -> dict:
        """The region, tier and calibration settings as run.json records them (the share of viral
        chunks is recorded beside them)."""
        return {
            "region_max_gap": self.region_max_gap,
            "region_min_chunks": self.region_min_chunks,
            "confidence_high": self.confidence_high,
            "confidence_medium": self.confidence_medium,
            "target_fdr": self.target_fdr,
            "calibration": None if self.calibration is None else str(self.calibration),
        }


def call_thresholds(options: ReportOptions) -> tuple[dict, Calibration | None, int | None]:
    """The chunk margin threshold and sequence fraction the calls use: the published rule, or
    the calibration's for --target-fdr. Returns (settings for run.json, calibration, its chunk row)."""
    loaded = options.check()
    if loaded is None:
        settings = {
            "rule": "published",
            "chunk_margin_threshold": PUBLISHED_CHUNK_THRESHOLD,
            "min_viral_fraction": options.min_viral_fraction,
        }
        return settings, None, None
    calibration, sha256 = loaded
    chunk_row, sequence_row = calibration.thresholds(options.target_fdr, str(options.calibration))
    settings = {
        "rule": "calibrated",
        "chunk_margin_threshold": float(CHUNK_THRESHOLDS[chunk_row]),
        "min_viral_fraction": float(SEQUENCE_THRESHOLDS[sequence_row]),
        "calibration": {"file": str(options.calibration), "sha256": sha256, **calibration.provenance},
        "target_fdr": options.target_fdr,
    }
    return settings, calibration, chunk_row


def check_calibration_made_for(
    calibration: Calibration,
    chunk_size: int,
    classifier_sha256: str | None,
    source: str,
    of_run: bool = False,
) -> None:
    """Refuse a calibration made for another chunk size or classifier than these scores' (or than
    the run about to make them, `of_run`)."""
    made = calibration.provenance
    chunks, scores = ("this run's chunks", "this run's classifier") if of_run else ("these", "these scores")
    if made["chunk_size"] != chunk_size:
        raise InputError(
            f"{source}: calibrated on {made['chunk_size']} bp chunks, but {chunks} are {chunk_size} bp; "
            "calibrate on chunks of this size"
        )
    if classifier_sha256 is None:
        raise InputError(
            f"{source}: {scores} do not record their classifier (no classifier_sha256), so this "
            "calibration cannot be checked against it; score them with `virnucpro predict`"
        )
    if made["classifier_sha256"] != classifier_sha256:
        raise InputError(
            f"{source}: calibrated for another classifier (sha256 {made['classifier_sha256'][:12]}..., "
            f"{scores}: {classifier_sha256[:12]}...); calibrate this classifier's scores"
        )


def annotate(
    data: ReportData, options: ReportOptions, calibration: Calibration | None, chunk_row: int | None
) -> None:
    """Confidence tiers, viral regions, kinds and (calibrated) estimated FDRs, into `data`."""
    chunks, sequences = data.chunks, data.sequences
    scored = chunks.scored
    chunks.tier = chunk_tiers(
        scored, chunks.called_viral, chunks.max_virus, chunks.max_others, options.confidence_high,
        options.confidence_medium,
    )  # fmt: skip
    table = call_regions(
        chunks.called_viral, chunks.sequence, chunks.start, chunks.end, sequences.n_chunks,
        options.region_max_gap, options.region_min_chunks,
    )  # fmt: skip
    data.regions = summarise_regions(table, scored, chunks.max_virus, chunks.called_viral, chunks.tier)
    sequences.viral_regions = np.bincount(table.sequence, minlength=len(sequences)).astype(np.int32)
    calls_virus = sequences.call == VIRUS
    sequences.kind = sequence_kinds(calls_virus, sequences.viral_regions)
    owner = chunks.sequence[scored]
    sequences.tier_counts, sequences.tier = summarise_tiers(
        owner, chunks.tier[scored], chunks.called_viral[scored] == calls_virus[owner], len(sequences)
    )
    if calibration is not None:
        called = chunks.called_viral
        chunks.estimated_fdr = np.full(len(chunks), np.nan, dtype=np.float32)
        chunks.estimated_fdr[called] = calibration.chunk_fdr(chunks.margin[called])
        sequences.estimated_fdr = np.full(len(sequences), np.nan)
        sequences.estimated_fdr[calls_virus] = calibration.sequence_fdr(
            chunk_row, sequences.viral_fraction[calls_virus]
        )


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


def chunk_ids(data: ReportData, rows: np.ndarray) -> pa.ChunkedArray:
    """`{sequence_id}_chunk_{k}` of the given chunks, as prepare names them."""
    chunks = data.chunks
    parts = [
        pc.binary_join_element_wise(
            data.sequences.ids.take(chunks.sequence[rows[part]]),
            "_chunk_",
            pc.cast(pa.array(chunks.index[rows[part]]), pa.string()),
            "",
        )
        for part in _batches(len(rows))
    ]
    return pa.chunked_array(parts, type=pa.string())


def text_order(data: ReportData, rows: np.ndarray) -> np.ndarray:
    """Positions in `rows` (chunks) that put their chunk ids in order as text, like Python's sorted().

    Every id of a sequence's chunks starts with the same prefix, `{sequence_id}_chunk_`, followed by
    the number. When no prefix is the start of another one (which needs a sequence id holding
    `_chunk_`), ids sort by prefix, then by number as text, without making every id; otherwise
    the ids themselves are sorted (Arrow compares UTF-8 bytes: Python's code point order).
    """
    if not len(rows):
        return np.empty(0, dtype=np.int64)
    ids = data.sequences.ids
    if pc.any(pc.match_substring(pc.binary_join_element_wise(ids, "_chunk", ""), "_chunk_")).as_py():
        return pc.sort_indices(chunk_ids(data, rows)).to_numpy()
    prefix_rank = np.empty(len(ids), dtype=np.int32)
    prefix_rank[pc.sort_indices(pc.binary_join_element_wise(ids, "_chunk_", "")).to_numpy()] = np.arange(
        len(ids), dtype=np.int32
    )
    index = data.chunks.index[rows]
    numbers = np.arange(1, int(index.max()) + 1)
    number_rank = np.empty(len(numbers) + 1, dtype=np.int32)
    number_rank[np.argsort(numbers.astype(str), kind="stable") + 1] = np.arange(len(numbers), dtype=np.int32)
    return np.lexsort((number_rank[index], prefix_rank[data.chunks.sequence[rows]]))


def write_highest_score(data: ReportData, path: Path) -> None:
    """The original's per-chunk consensus: scored chunks, sorted by id as text (pandas groupby)."""
    scored = np.flatnonzero(data.chunks.scored)
    ordered = scored[text_order(data, scored)]
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("Modified_ID\tIs_Virus\n")
        for part in _batches(len(ordered)):
            rows = ordered[part]
            out.writelines(
                f"{chunk_id}\t{flag}\n"
                for chunk_id, flag in zip(
                    chunk_ids(data, rows).to_pylist(), data.chunks.viral[rows].tolist(), strict=True
                )
            )


def write_chunks(data: ReportData, path: Path) -> None:
    chunks = data.chunks
    calls = np.where(chunks.scored, np.where(chunks.called_viral, VIRUS, OTHERS), UNSCORED).astype(np.uint8)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(CHUNK_COLUMNS) + "\n")
        for rows in _batches(len(chunks)):
            sequence_ids = data.sequences.ids.take(chunks.sequence[rows]).to_pylist()
            out.writelines(
                f"{sequence_id}\t{index}\t{sequence_id}_chunk_{index}\t{start}\t{end}\t{end - start + 1}\t"
                f"{FRAME_COUNTS[mask]}\t{FRAME_SETS[mask]}\t{_BEST_FRAME_TEXT[best + 1]}\t{others}\t{virus}\t"
                f"{CALLS[call]}\t{NO_FRAME_REASON if not mask else ''}\t{margin}\t{TIERS[tier]}\t{fdr}\n"
                for sequence_id, index, start, end, mask, best, others, virus, call, margin, tier, fdr in zip(
                    sequence_ids,
                    chunks.index[rows].tolist(),
                    chunks.start[rows].tolist(),
                    chunks.end[rows].tolist(),
                    chunks.frame_mask[rows].tolist(),
                    chunks.best_frame[rows].tolist(),
                    float32_texts(chunks.max_others[rows]),
                    float32_texts(chunks.max_virus[rows]),
                    calls[rows].tolist(),
                    float32_texts(chunks.margin[rows]),
                    chunks.tier[rows].tolist(),
                    _optional(chunks.estimated_fdr, rows),
                    strict=True,
                )
            )


def write_sequences(data: ReportData, path: Path) -> None:
    sequences = data.sequences
    fractions = sequences.viral_fraction
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(SEQUENCE_COLUMNS) + "\n")
        for rows, ids in zip(_batches(len(sequences)), sequences.id_batches(), strict=True):
            high, medium, low = share_texts(sequences.tier_counts[rows])
            out.writelines(
                f"{sequence_id}\t{record}\t{length}\t{n_chunks}\t{scored}\t{viral}\t"
                f"{fraction}\t{best}\t{mean}\t{CALLS[call]}\t"
                f"{regions}\t{KINDS[kind]}\t{share_high}\t{share_medium}\t{share_low}\t{TIERS[tier]}\t{fdr}\n"
                for (
                    sequence_id, record, length, n_chunks, scored, viral, fraction, best, mean, call, regions, kind,
                    share_high, share_medium, share_low, tier, fdr,
                ) in zip(
                    ids,
                    sequences.record[rows].tolist(),
                    sequences.length[rows].tolist(),
                    sequences.n_chunks[rows].tolist(),
                    sequences.chunks_scored[rows].tolist(),
                    sequences.viral_chunks[rows].tolist(),
                    fixed_texts(fractions[rows]),  # NaN (unscored): empty
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
    table = summary.table
    fraction = table.length / sequences.length[table.sequence]
    scores = bed_scores(summary.mean_virus)
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
            high, medium, low = share_texts(summary.tier_counts[rows])
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
                    fixed_texts(fraction[rows]),
                    high, medium, low,
                    summary.tier[rows].tolist(),
                    strict=True,
                )
            )  # fmt: skip
            bed.writelines(
                f"{sequence_id}\t{start - 1}\t{end}\t{sequence_id}|region_{number}\t{score}\t.\n"
                for sequence_id, number, start, end, score in zip(
                    ids, numbers, starts, ends, scores[rows].tolist(), strict=True
                )
            )


def _sequence_rows(data: ReportData) -> Iterator[tuple[str, int, range]]:
    """(id, call, its rows in the region table) of every sequence in input order."""
    sequences = data.sequences
    ends = np.cumsum(sequences.viral_regions)
    for rows, ids in zip(_batches(len(sequences)), sequences.id_batches(), strict=True):
        yield from zip(
            ids,
            sequences.call[rows].tolist(),
            map(range, (ends[rows] - sequences.viral_regions[rows]).tolist(), ends[rows].tolist()),
            strict=True,
        )


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


def check_inputs_prepared(source: SequenceInputs, prepared: str | Path) -> None:
    """Refuse inputs that are not, in number, order and content, those the prepare folder was made
    from (a stream cannot be read twice: its records are compared while viral.fa is written)."""
    summary = read_summary(prepared)
    recorded = summary.inputs if summary else []
    if len(recorded) != len(source.files):
        raise InputError(
            f"{', '.join(file.name for file in source.files)}: {len(source.files)} input file(s), but "
            f"{prepared} was made from {len(recorded)}; give the same --input files, in the same order"
        )
    for file, entry in zip(source.files, recorded, strict=True):
        if is_stream(file.path):
            continue
        try:
            digest = file_sha256(file.path)
        except OSError as err:
            raise file.error(f"cannot read ({err.strerror})") from None
        if digest != entry.get("sha256"):
            raise file.error(
                f"is not the input the prepare folder was made from ({prepared} was made from "
                f"{entry.get('path')}, whose content differs); give the same --input files, in the same order"
            )


def torch_version() -> str:
    """torch.__version__ without importing torch (seconds and hundreds of MB the report never uses):
    the installed package's own `version.py`, which only defines constants."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return "not installed"
    version_spec = importlib.util.spec_from_file_location(
        "_virnucpro_torch_version", Path(spec.origin).with_name("version.py")
    )
    try:
        module = importlib.util.module_from_spec(version_spec)
        version_spec.loader.exec_module(module)
        return module.__version__
    except (OSError, AttributeError):
        try:
            return package_version("torch")
        except PackageNotFoundError:
            return "unknown"


def software_versions() -> dict[str, str]:
    return {
        "virnucpro": __version__,
        "python": platform.python_version(),
        "torch": torch_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
    }


def _merge(base: dict, extra: Mapping) -> dict:
    """`extra` into `base`; nested dicts are merged key by key (timings of several stages)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


# The keys of run.json that report writes itself: --run-info may add others, and timings of other
# stages, never replace these (a later reader, and calibrate, rely on their shape).
RUN_JSON_KEYS = ("command", "inputs", "input_notes", "parameters", "calls", "models", "counts", "versions")


def read_run_info(path: str | Path) -> dict:
    """--run-info: a JSON object of keys to add to run.json (workflow metadata), none of them one
    that report writes itself, and `timings` (seconds per stage) merged with report's own; finite
    numbers only, nested at most a few dozen levels."""
    from virnucpro.files.json_files import is_number, read_json_object

    content = read_json_object(path, "--run-info")
    taken = [key for key in RUN_JSON_KEYS if key in content]
    if taken:
        raise InputError(
            f"{path}: --run-info sets {taken[0]!r}, which report writes itself; put workflow metadata "
            "under a key of its own (e.g. nextflow)"
        )
    timings = content.get("timings", {})
    if not isinstance(timings, dict) or not all(is_number(v) and v >= 0 for v in timings.values()):
        raise InputError(
            f"{path}: --run-info's timings must be an object of seconds per stage (numbers of at least 0), "
            f"not {json.dumps(timings)[:80]}"
        )
    return content


def write_run_json(path: Path, content: dict) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        json.dump(content, out, indent=2, sort_keys=True)
        out.write("\n")


def report(
    inputs: str | Path | Sequence[str | Path],
    prepared: str | Path,
    score_files: Sequence[str | Path],
    outdir: str | Path,
    options: ReportOptions = ReportOptions(),
    run_info: Mapping | None = None,
    quiet: bool = False,
    check_inputs: bool = True,
) -> ReportData:
    """Write every final output into `outdir`; `run_info` keys are merged into run.json. Everything
    is read and checked before the earlier outputs are removed: the prepare folder, the scores, the
    calibration and (unless `check_inputs` is False: the caller checked them) that the inputs are
    the files the prepare folder was made from."""
    from virnucpro.report.html import write_html_report

    started = time.monotonic()
    settings, calibration, chunk_row = call_thresholds(options)
    source = SequenceInputs(inputs)
    input_paths = [file.path for file in source.files]
    outdir = Path(outdir)
    check_final_outputs(outdir, input_paths, "virnucpro report")  # refused now, not after the work
    with progress_task("report", total=4, quiet=quiet, unit="steps") as progress:
        data = collect(
            prepared, score_files, settings["min_viral_fraction"], settings["chunk_margin_threshold"]
        )
        made_for = data.provenance.get("classifier_chunk_size")
        if made_for is not None and made_for != str(data.chunk_size):
            raise InputError(
                f"{data.provenance.get('classifier', 'the classifier')}: its scores are of a classifier for "
                f"{made_for} bp chunks, but {prepared} holds {data.chunk_size} bp chunks; predict with the "
                f"{data.chunk_size} bp classifier"
            )
        if calibration is not None:
            check_calibration_made_for(
                calibration,
                data.chunk_size,
                data.provenance.get("classifier_sha256"),
                str(options.calibration),
            )
        data.settings = {
            **settings,
            "region_max_gap": options.region_max_gap,
            "region_min_chunks": options.region_min_chunks,
            "confidence_high": options.confidence_high,
            "confidence_medium": options.confidence_medium,
        }
        annotate(data, options, calibration, chunk_row)
        if check_inputs:
            check_inputs_prepared(source, prepared)
        begin_final_outputs(outdir, input_paths, "virnucpro report")  # run.json goes first, written last
        progress.advance()
        write_prediction_results(data, outdir / PREDICTION_RESULTS)
        write_highest_score(data, outdir / HIGHEST_SCORE)
        write_chunks(data, outdir / CHUNKS_TSV)
        write_sequences(data, outdir / SEQUENCES_TSV)
        write_regions(data, outdir / VIRAL_REGIONS_TSV, outdir / VIRAL_REGIONS_BED)
        progress.advance()
        write_fastas(data, input_paths, outdir / VIRAL_FASTA, outdir / VIRAL_REGIONS_FASTA)
        progress.advance()
        write_html_report(data, outdir, title=", ".join(path.name for path in input_paths))
        progress.advance()
    summary = read_summary(prepared)
    content = {
        "command": "report",
        "inputs": summary.inputs if summary else [str(path) for path in input_paths],
        "input_notes": summary.notes if summary else [],
        "parameters": {
            "chunk_size": data.chunk_size,
            "min_viral_fraction": options.min_viral_fraction,
            **options.parameters(),
        },
        "calls": data.settings,
        "models": data.provenance,
        "counts": data.counts(),
        "versions": software_versions(),
    }
    _merge(content, dict(run_info or {}))
    _merge(content, {"timings": {"report_s": round(time.monotonic() - started, 3)}})
    write_run_json(outdir / RUN_JSON, content)
    counts = data.counts()
    log.info(
        "report: %d of %d sequences viral, %d more with viral regions; %d of %d scored chunks viral; "
        "outputs in %s",
        counts["sequences_virus"],
        counts["sequences"],
        counts["sequences_region_only"],
        counts["chunks_virus"],
        counts["chunks_scored"],
        outdir,
    )
    return data
