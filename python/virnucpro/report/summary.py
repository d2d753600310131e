"""One summary row per sample, counted from the sample's own result files, and summary.tsv/.json.

Where each count comes from (a finished sample's folder, as `virnucpro run` or `report` wrote it):

- `input_files`: the entries of run.json's `inputs` (the files read in order as one sample);
- `sequences`, `bases`, `chunks`, `chunks_scored`, `viral_chunks`: sequences.tsv, its rows and the
  sums of its `length`, `n_chunks`, `chunks_scored` and `viral_chunks` columns (each chunk belongs to
  one sequence, so these are chunks.tsv's totals without reading chunks.tsv, the largest table);
- `viral_sequences`: rows of sequences.tsv whose `call` is `virus`; `viral_high`, `viral_medium`,
  `viral_low`: those by their `confidence` (a sequence called virus has scored chunks, so always a
  tier; the empty tier belongs to unscored sequences only);
- `sequences_with_regions`: rows with `viral_regions` above 0;
- `viral_bases_in_regions`: the sum of viral_regions.tsv's `length` (a sequence's regions never
  overlap: they are separate runs of chunks);
- `calibrated`: run.json's `calls.rule` (`calibrated`: yes); `target_fdr`: `calls.target_fdr`,
  only for a calibrated sample (the published rule follows no target).

The tables are streamed (a sample may hold 10^7 sequences), and what they say is checked against
run.json's `counts`: a folder whose files come from two runs is refused, not summed.
A failed sample gets what is known: a folder of `virnucpro run` holds prepare's counts.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from virnucpro.errors import InputError
from virnucpro.files.atomic import atomic_open
from virnucpro.files.json_files import is_count, is_number, read_json_object
from virnucpro.files.layout import (
    PREPARE_DIR,
    REPORT_HTML,
    RUN_JSON,
    SEQUENCES_TSV,
    VIRAL_REGIONS_TSV,
    WORK_DIR,
)
from virnucpro.files.manifest import FAILED, FINISHED, SampleSpec

log = logging.getLogger("virnucpro")

TIERS = ("high", "medium", "low")  # sequences.tsv's `confidence` of a scored sequence
COLUMNS = (
    "sample",
    "status",
    "failed_stage",
    "input_files",
    "sequences",
    "bases",
    "chunks",
    "chunks_scored",
    "viral_chunks",
    "viral_sequences",
    "sequences_with_regions",
    "viral_bases_in_regions",
    *(f"viral_{tier}" for tier in TIERS),
    "calibrated",
    "target_fdr",
)
COUNT_COLUMNS = COLUMNS[3:-2]
# The files of a finished folder that a summary reads (the inputs of `virnucpro summarize`).
READ_FILES = (RUN_JSON, SEQUENCES_TSV, VIRAL_REGIONS_TSV)
CALLS = ("unscored", "others", "virus")
SEQUENCE_TIERS = ("", "low", "medium", "high")
_SEQUENCE_TYPES = {
    "length": pa.int64(),
    "n_chunks": pa.int64(),
    "chunks_scored": pa.int64(),
    "viral_chunks": pa.int64(),
    "call": pa.string(),
    "viral_regions": pa.int64(),
    "confidence": pa.string(),
}
_REGION_TYPES = {"length": pa.int64()}
_PARSE = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False)
_BLOCK_BYTES = 1 << 23
# sequences.tsv's sums against run.json's counts (where run.json has them)
_CHECKED_COUNTS = {
    "sequences": "sequences",
    "chunks": "chunks",
    "chunks_scored": "chunks_scored",
    "viral_chunks": "chunks_virus",
    "viral_sequences": "sequences_virus",
    "sequences_with_regions": "sequences_with_viral_regions",
}

Row = dict[str, object]  # a column of COLUMNS -> int, str or None (unknown)


def empty_row(spec: SampleSpec) -> Row:
    row: Row = dict.fromkeys(COLUMNS)
    row.update(sample=spec.sample, status=spec.status, failed_stage=spec.failed_stage)
    return row


def sample_row(spec: SampleSpec, from_manifest: bool = False) -> Row:
    """The row of one sample. A finished sample's folder must hold run.json and its tables; given
    on the command line (not `from_manifest`), a folder without run.json is a failed sample (the
    run did not finish), and a folder that does not exist is refused (most likely a typo)."""
    folder = spec.folder
    if folder is not None and not folder.is_dir():
        raise InputError(
            f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}; give the result folder of "
            f"sample {spec.sample!r} (the --outdir of its `virnucpro run`)"
        )
    if spec.status == FINISHED and folder is not None and not (folder / RUN_JSON).is_file():
        if from_manifest:
            raise InputError(
                f"{folder}: no {RUN_JSON}, but the manifest says sample {spec.sample!r} finished; its results "
                "are missing or incomplete"
            )
        spec = SampleSpec(spec.sample, FAILED, failed_stage(folder), folder, spec.report_link)
        log.warning(
            "%s: no %s (the run did not finish): sample %s is listed as failed%s",
            folder,
            RUN_JSON,
            spec.sample,
            f" in {spec.failed_stage}" if spec.failed_stage else "",
        )
    row = empty_row(spec)
    if spec.status == FAILED:
        if folder is not None:
            row.update(prepared_counts(folder))
        return row
    run = read_run_json(folder / RUN_JSON)
    row["input_files"] = run["input_files"]
    row.update(sequence_counts(folder / SEQUENCES_TSV))
    regions, row["viral_bases_in_regions"] = region_counts(folder / VIRAL_REGIONS_TSV)
    counts = run["counts"]
    found = [(SEQUENCES_TSV, key, row[column]) for column, key in _CHECKED_COUNTS.items()]
    for table, key, value in [*found, (VIRAL_REGIONS_TSV, "viral_regions", regions)]:
        if key in counts and counts[key] != value:
            raise InputError(
                f"{folder / table}: {value} {key.replace('_', ' ')}, but {folder / RUN_JSON} counts "
                f"{counts[key]}; the folder holds files of different runs: run the sample's report again"
            )
    row["calibrated"] = "yes" if run["calibrated"] else "no"
    row["target_fdr"] = run["target_fdr"] if run["calibrated"] else None
    return row


def read_run_json(path: Path) -> dict:
    """What a summary reads of run.json: the number of input files, `counts`, and the calls' rule
    and target FDR; one line naming the field when one is not as report writes it."""
    content = read_json_object(path)
    inputs, counts, calls = content.get("inputs"), content.get("counts"), content.get("calls")
    if not isinstance(inputs, list):
        raise InputError(f"{path}: 'inputs' must be a list of the input files, not {json.dumps(inputs)[:60]}")
    if not isinstance(counts, dict) or not all(is_count(v) for v in counts.values()):
        raise InputError(f"{path}: 'counts' must be an object of whole numbers of at least 0")
    if not isinstance(calls, dict) or calls.get("rule") not in ("published", "calibrated"):
        raise InputError(f"{path}: 'calls' must be an object whose 'rule' is published or calibrated")
    calibrated = calls["rule"] == "calibrated"
    target = calls.get("target_fdr")
    if calibrated and not (is_number(target) and 0 < target < 1):
        raise InputError(
            f"{path}: 'calls' is calibrated, but its 'target_fdr' is not a number between 0 and 1"
        )
    return {"input_files": len(inputs), "counts": counts, "calibrated": calibrated, "target_fdr": target}


def prepared_counts(folder: Path) -> Row:
    """What a failed sample's folder tells: prepare's counts, when a prepare finished there (a folder
    of `virnucpro run` keeps them in work/prepare, a prepare folder at its top)."""
    from virnucpro.files.prepared import read_summary

    for prepared in (folder / WORK_DIR / PREPARE_DIR, folder):
        summary = read_summary(prepared)
        if summary is not None:
            return {
                "input_files": len(summary.inputs),
                "sequences": summary.sequences,
                "bases": summary.bases,
                "chunks": summary.chunks,
            }
    return {}


def failed_stage(folder: Path) -> str:
    """The stage a `virnucpro run` folder without run.json stopped at: PREPARE when prepare did not
    finish, EMBED when a shard has no score file, else REPORT; empty when the folder is not a run's."""
    from virnucpro.files.layout import PARAMETERS_JSON, SCORES_DIR, scores_file
    from virnucpro.files.prepared import read_summary

    work = folder / WORK_DIR
    if not (work / PARAMETERS_JSON).is_file():
        return ""
    summary = read_summary(work / PREPARE_DIR)
    if summary is None:
        return "PREPARE"
    names = [shard.get("name") for shard in summary.shards if isinstance(shard, dict)]
    if any(not isinstance(name, str) or not scores_file(work / SCORES_DIR, name).is_file() for name in names):
        return "EMBED"
    return "REPORT"


def _header(path: Path) -> list[str]:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 20)
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        return first.decode("utf-8").rstrip("\r\n").split("\t")
    except UnicodeDecodeError:
        raise InputError(f"{path}, line 1: not UTF-8 text") from None


def stream_table(path: Path, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    """The columns `types` of a tab-separated table of ours, a block at a time; a problem is one line
    naming the file, the line and the record."""
    header = _header(path)
    missing = next((name for name in types if name not in header), None)
    if missing:
        raise InputError(f"{path}: no column {missing!r}; is it a {path.name} of virnucpro report?")
    convert = pacsv.ConvertOptions(
        include_columns=list(types), column_types=types, null_values=[], strings_can_be_null=False
    )
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=_PARSE,
            convert_options=convert,
        )
        yield from reader
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise InputError(
            _locate_problem(path, header, types) or f"{path}: {str(err).splitlines()[0][:200]}"
        ) from None
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err.strerror or err})") from None


def _locate_problem(path: Path, header: list[str], types: dict[str, pa.DataType]) -> str | None:
    """The first line of `path` that pyarrow refused, as a message (read again, line by line: only
    after a failure)."""
    numbers = [header.index(name) for name, kind in types.items() if pa.types.is_integer(kind)]
    with open(path, "rb") as handle:
        handle.readline()
        for number, raw in enumerate(handle, 2):
            try:
                values = raw.decode("utf-8").rstrip("\r\n").split("\t")
            except UnicodeDecodeError as err:
                return f"{path}, line {number}: not UTF-8 text (byte {err.start})"
            record = values[0][:40]
            if len(values) != len(header):
                return f"{path}, line {number} ({record}): {len(values)} values for {len(header)} columns"
            for index in numbers:
                if not values[index].isdigit():
                    return f"{path}, line {number} ({record}): {header[index]} {values[index][:20]!r} is not a count"
    return None


def _total(column: pa.Array) -> int:
    return int(pc.sum(column).as_py() or 0)


def sequence_counts(path: Path) -> Row:
    """The counts of sequences.tsv (see the module docstring), streamed."""
    # sequences ... sequences_with_regions: the columns counted from sequences.tsv alone
    counts = dict.fromkeys(
        COLUMNS[COLUMNS.index("sequences") : COLUMNS.index("sequences_with_regions") + 1], 0
    )
    tiers = dict.fromkeys(SEQUENCE_TIERS, 0)
    for batch in stream_table(path, _SEQUENCE_TYPES):
        calls, confidence = batch.column("call"), batch.column("confidence")
        unknown = pc.invert(pc.is_in(calls, value_set=pa.array(CALLS)))
        if pc.any(unknown).as_py():
            raise InputError(
                f"{path}: call {pc.filter(calls, unknown)[0].as_py()[:20]!r}; it must be one of {', '.join(CALLS)}"
            )
        viral = pc.equal(calls, "virus")
        counts["sequences"] += batch.num_rows
        counts["bases"] += _total(batch.column("length"))
        for column in ("chunks", "chunks_scored", "viral_chunks"):
            counts[column] += _total(batch.column("n_chunks" if column == "chunks" else column))
        counts["viral_sequences"] += _total(pc.cast(viral, pa.int64()))
        counts["sequences_with_regions"] += _total(
            pc.cast(pc.greater(batch.column("viral_regions"), 0), pa.int64())
        )
        for entry in pc.value_counts(pc.filter(confidence, viral)).to_pylist():
            tier = entry["values"]
            if tier not in tiers:
                raise InputError(
                    f"{path}: confidence {tier[:20]!r}; it must be one of {', '.join(t or 'empty' for t in SEQUENCE_TIERS)}"
                )
            tiers[tier] += entry["counts"]
    if tiers[""]:
        raise InputError(
            f"{path}: {tiers['']} sequence(s) called virus without a confidence tier; is it a {SEQUENCES_TSV} of virnucpro report?"
        )
    return {**counts, **{f"viral_{tier}": tiers[tier] for tier in TIERS}}


def region_counts(path: Path) -> tuple[int, int]:
    """The number of viral regions in viral_regions.tsv and the bases they cover, streamed."""
    regions = bases = 0
    for batch in stream_table(path, _REGION_TYPES):
        regions += batch.num_rows
        bases += _total(batch.column("length"))
    return regions, bases


def summary_rows(samples: Sequence[SampleSpec], from_manifest: bool = False) -> list[Row]:
    return [sample_row(spec, from_manifest) for spec in samples]


def report_link(spec: SampleSpec, row: Row, outdir: Path) -> str | None:
    """The link to a finished sample's report.html, relative to the summary's folder (None for a
    failed sample, or one without a report)."""
    if row["status"] != FINISHED:
        return None
    if spec.report_link:
        return spec.report_link
    report = spec.folder / REPORT_HTML
    if not report.is_file():
        return None
    return Path(os.path.relpath(report.resolve(), outdir.resolve())).as_posix()


def cell(value: object) -> str:
    """A value as summary.tsv writes it: empty for unknown, a float as Python writes it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def write_tsv(rows: Sequence[Row], path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(COLUMNS) + "\n")
        out.writelines("\t".join(cell(row[c]) for c in COLUMNS) + "\n" for row in rows)


def write_json(rows: Sequence[Row], path: Path) -> None:
    """summary.json: the rows of summary.tsv as objects (unknown: null), in the same order."""
    from virnucpro import __version__

    content = {
        "format": "virnucpro-summary",
        "version": 1,
        "virnucpro": __version__,
        "columns": list(COLUMNS),
        "samples": [{c: row[c] for c in COLUMNS} for row in rows],
    }
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        json.dump(content, out, indent=2, ensure_ascii=False)
        out.write("\n")
