"""The `report` stage: per-frame scores to the final outputs.

It reads prepare's tables and every score file into columns (`report.data`), checks the settings
and the calibration, calls viral regions and confidence tiers, and writes the tables and sequence
files (`report.tables`: the original's two files, chunks.tsv, sequences.tsv, viral_regions.*,
viral.fa), report.html with its figures (`report.html`, `report.figures`), and last run.json:
parameters, the thresholds the calls used, models, versions, counts and timings.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import pyarrow as pa

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
from virnucpro.files.prepared import read_summary
from virnucpro.files.sequences import SequenceInputs, is_stream
from virnucpro.method.calibration import (
    CHUNK_THRESHOLDS,
    SEQUENCE_THRESHOLDS,
    Calibration,
    check_target,
    load_calibration,
)
from virnucpro.method.calls import PUBLISHED_CHUNK_THRESHOLD, VIRUS
from virnucpro.method.confidence import check_thresholds, chunk_tiers
from virnucpro.method.regions import call_regions, check_region_bounds, sequence_kinds, summarise_regions
from virnucpro.progress import progress_task
from virnucpro.report.data import ReportData, read_report_data
from virnucpro.report.tables import (
    write_chunks,
    write_fastas,
    write_highest_score,
    write_prediction_results,
    write_regions,
    write_sequences,
)

log = logging.getLogger("virnucpro")


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
        check_region_bounds(self.region_max_gap, self.region_min_chunks)
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


def add_regions_and_tiers(
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
    sequences.tier = np.empty(len(sequences), dtype=np.uint8)
    for rows, chunk_rows in sequences.spans():
        sequences.tier[rows] = data.sequence_tiers(rows, chunk_rows)[1]
    if calibration is not None:
        called = chunks.called_viral
        chunks.estimated_fdr = np.full(len(chunks), np.nan, dtype=np.float32)
        chunks.estimated_fdr[called] = calibration.chunk_fdr(chunks.margin(called))
        sequences.estimated_fdr = np.full(len(sequences), np.nan)
        sequences.estimated_fdr[calls_virus] = calibration.sequence_fdr(
            chunk_row, sequences.viral_fraction(calls_virus)
        )


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
        data = read_report_data(
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
        add_regions_and_tiers(data, options, calibration, chunk_row)
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
