"""The `report` stage: per-frame scores to the final outputs (design section 5).

- `prediction_results.txt` and `prediction_results_highestscore.csv`: the original tool's files,
  byte for byte in its layout (tab-separated; floats as numpy prints float32 scalars; True/False);
- `chunks.tsv`: every chunk, also those without a stop-free frame, with its best scores and call;
- `sequences.tsv`: every input sequence with its chunk counts, viral fraction and call;
- `viral.fa`: the input sequences called viral;
- `report.html` with `score_histogram.png` and `sequence_tracks.png` (see `report_html`);
- `run.json`: parameters, models, versions, counts and timings.

The data are columns (`report_data`); every file is written ROWS_PER_BATCH rows at a time, so the
text of a file is never held whole.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro import __version__
from virnucpro.atomic import atomic_open
from virnucpro.defaults import DEFAULT_MIN_VIRAL_FRACTION
from virnucpro.errors import InputError
from virnucpro.frames import FRAME_LABELS, FRAME_SETS
from virnucpro.output_folder import begin_final_outputs, finish_final_outputs
from virnucpro.paths import (
    CHUNKS_TSV,
    HIGHEST_SCORE,
    PREDICTION_RESULTS,
    RUN_JSON,
    SEQUENCES_TSV,
    VIRAL_FASTA,
)
from virnucpro.prepare import read_summary
from virnucpro.progress import progress_task
from virnucpro.report_data import (
    CALLS,
    FRAME_COUNTS,
    OTHERS,
    ROWS_PER_BATCH,
    UNSCORED,
    VIRUS,
    ReportData,
    collect,
)
from virnucpro.sequences import SequenceInputs

log = logging.getLogger("virnucpro")

CHUNK_COLUMNS = (
    "sequence_id",
    "chunk_index",
    "chunk_id",
    "start",
    "end",
    "length",
    "n_frames",
    "frames",
    "best_frame",
    "max_score_others",
    "max_score_virus",
    "call",
    "reason",
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
)
NO_FRAME_REASON = "no stop-free frame"
_BEST_FRAME_TEXT = ("", *FRAME_LABELS)  # indexed by best_frame + 1 (-1: unscored)


def float32_text(value: float) -> str:
    """A float32 as numpy prints it (`str(np.float32(x))`): what the original wrote."""
    return str(np.float32(value))


def float32_texts(values: np.ndarray) -> list[str]:
    """`float32_text` of each value (float32 array); NaN (no value) gives an empty field."""
    return ["" if text == "nan" else text for text in map(str, values.astype(np.float32, copy=False))]


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
    calls = np.where(chunks.scored, np.where(chunks.viral, VIRUS, OTHERS), UNSCORED).astype(np.uint8)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(CHUNK_COLUMNS) + "\n")
        for rows in _batches(len(chunks)):
            sequence_ids = data.sequences.ids.take(chunks.sequence[rows]).to_pylist()
            out.writelines(
                f"{sequence_id}\t{index}\t{sequence_id}_chunk_{index}\t{start}\t{end}\t{end - start + 1}\t"
                f"{FRAME_COUNTS[mask]}\t{FRAME_SETS[mask]}\t{_BEST_FRAME_TEXT[best + 1]}\t{others}\t{virus}\t"
                f"{CALLS[call]}\t{NO_FRAME_REASON if not mask else ''}\n"
                for sequence_id, index, start, end, mask, best, others, virus, call in zip(
                    sequence_ids,
                    chunks.index[rows].tolist(),
                    chunks.start[rows].tolist(),
                    chunks.end[rows].tolist(),
                    chunks.frame_mask[rows].tolist(),
                    chunks.best_frame[rows].tolist(),
                    float32_texts(chunks.max_others[rows]),
                    float32_texts(chunks.max_virus[rows]),
                    calls[rows].tolist(),
                    strict=True,
                )
            )


def write_sequences(data: ReportData, path: Path) -> None:
    sequences = data.sequences
    fractions = sequences.viral_fraction
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(SEQUENCE_COLUMNS) + "\n")
        for rows, ids in zip(_batches(len(sequences)), sequences.id_batches(), strict=True):
            out.writelines(
                f"{sequence_id}\t{record}\t{length}\t{n_chunks}\t{scored}\t{viral}\t"
                f"{f'{fraction:.4f}' if scored else ''}\t{best}\t{mean}\t{CALLS[call]}\n"
                for sequence_id, record, length, n_chunks, scored, viral, fraction, best, mean, call in zip(
                    ids,
                    sequences.record[rows].tolist(),
                    sequences.length[rows].tolist(),
                    sequences.n_chunks[rows].tolist(),
                    sequences.chunks_scored[rows].tolist(),
                    sequences.viral_chunks[rows].tolist(),
                    fractions[rows].tolist(),
                    float32_texts(sequences.max_virus[rows]),
                    float32_texts(sequences.mean_virus[rows]),
                    sequences.call[rows].tolist(),
                    strict=True,
                )
            )


def write_viral_fasta(data: ReportData, inputs: Sequence[Path], path: Path) -> None:
    """The input records called viral (inputs read in prepare's order), unwrapped, with their whole
    header line."""
    calls = data.sequences.call
    listed = itertools.chain.from_iterable(data.sequences.id_batches())
    source = SequenceInputs(inputs)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        count = 0
        for count, record in enumerate(source.records(), start=1):
            if next(listed, None) != record.id:
                raise source.files[record.file - 1].error(
                    "is not the input the prepare folder was made from; give the same --input files, "
                    "in the same order",
                    record.number,
                    record.id,
                )
            if calls[count - 1] == VIRUS:
                out.write(f">{record.header}\n{record.sequence}\n")
        if count != len(calls):
            names = ", ".join(file.name for file in source.files)
            raise InputError(f"{names}: {count} records, but the prepare folder lists {len(calls)}")


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


def write_run_json(path: Path, content: dict) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        json.dump(content, out, indent=2, sort_keys=True)
        out.write("\n")


def report(
    inputs: str | Path | Sequence[str | Path],
    prepared: str | Path,
    score_files: Sequence[str | Path],
    outdir: str | Path,
    min_viral_fraction: float = DEFAULT_MIN_VIRAL_FRACTION,
    run_info: Mapping | None = None,
    quiet: bool = False,
) -> ReportData:
    """Write every final output into `outdir`; `run_info` keys are merged into run.json."""
    from virnucpro.report_html import write_html_report

    started = time.monotonic()
    if not 0.0 <= min_viral_fraction <= 1.0:
        raise InputError(f"--min-viral-fraction must be between 0 and 1, not {min_viral_fraction}")
    input_paths = [file.path for file in SequenceInputs(inputs).files]
    outdir = Path(outdir)
    begin_final_outputs(outdir, input_paths, "report")  # run.json goes first, written last
    with progress_task("report", total=4, quiet=quiet, unit="steps") as progress:
        data = collect(prepared, score_files, min_viral_fraction)
        progress.advance()
        write_prediction_results(data, outdir / PREDICTION_RESULTS)
        write_highest_score(data, outdir / HIGHEST_SCORE)
        write_chunks(data, outdir / CHUNKS_TSV)
        write_sequences(data, outdir / SEQUENCES_TSV)
        progress.advance()
        write_viral_fasta(data, input_paths, outdir / VIRAL_FASTA)
        progress.advance()
        write_html_report(data, outdir, title=", ".join(path.name for path in input_paths))
        progress.advance()
    summary = read_summary(prepared)
    content = {
        "command": "report",
        "inputs": summary.inputs if summary else [str(path) for path in input_paths],
        "input_notes": summary.notes if summary else [],
        "parameters": {"chunk_size": data.chunk_size, "min_viral_fraction": min_viral_fraction},
        "models": data.provenance,
        "counts": data.counts(),
        "versions": software_versions(),
    }
    _merge(content, dict(run_info or {}))
    _merge(content, {"timings": {"report_s": round(time.monotonic() - started, 3)}})
    write_run_json(outdir / RUN_JSON, content)
    finish_final_outputs(outdir)
    counts = data.counts()
    log.info(
        "report: %d of %d sequences viral, %d of %d scored chunks viral; outputs in %s",
        counts["sequences_virus"],
        counts["sequences"],
        counts["chunks_virus"],
        counts["chunks_scored"],
        outdir,
    )
    return data
