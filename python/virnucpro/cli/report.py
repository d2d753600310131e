"""`virnucpro report`: the final tables, FASTA, HTML report and run.json from all scores."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import MinViralFraction, Quiet
from virnucpro.cli.report_options import (
    CalibrationFile,
    ConfidenceHigh,
    ConfidenceMedium,
    RegionMaxGap,
    RegionMinChunks,
    TargetFdr,
    report_options,
)
from virnucpro.defaults import (
    DEFAULT_CONFIDENCE_HIGH,
    DEFAULT_CONFIDENCE_MEDIUM,
    DEFAULT_MIN_VIRAL_FRACTION,
    DEFAULT_REGION_MAX_GAP,
    DEFAULT_REGION_MIN_CHUNKS,
    DEFAULT_TARGET_FDR,
)
from virnucpro.files.outdir import no_trace_if_refused
from virnucpro.progress import configure_logging


@app.command("report")
def report_command(
    inputs: list[Path] = typer.Option(
        ...,
        "--input",
        help="The reads or contigs given to prepare (for viral.fa); repeat for a sample of several "
        "files, in prepare's order.",
    ),
    prepared: Path = typer.Option(
        ..., "--prepared", help="The prepare stage's output folder (chunk_frames.tsv ...)."
    ),
    scores: list[Path] = typer.Option(
        None,
        "--scores",
        help="Every shard_NNNNN.scores.parquet of the run, or a folder holding them; several may follow "
        "one --scores.",
    ),
    more_scores: list[Path] = typer.Argument(
        None, help="Further score files (`--scores A B C` puts B, C here).", show_default=False
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for the final outputs."),
    min_viral_fraction: MinViralFraction = DEFAULT_MIN_VIRAL_FRACTION,
    region_max_gap: RegionMaxGap = DEFAULT_REGION_MAX_GAP,
    region_min_chunks: RegionMinChunks = DEFAULT_REGION_MIN_CHUNKS,
    confidence_high: ConfidenceHigh = DEFAULT_CONFIDENCE_HIGH,
    confidence_medium: ConfidenceMedium = DEFAULT_CONFIDENCE_MEDIUM,
    target_fdr: TargetFdr = DEFAULT_TARGET_FDR,
    calibration: CalibrationFile = None,
    run_info: Path = typer.Option(
        None, "--run-info", help="JSON file whose keys are merged into run.json (e.g. workflow metadata)."
    ),
    quiet: Quiet = False,
) -> None:
    """Write the final tables, viral regions, viral.fa, report.html and run.json from all scores.

    Writes prediction_results.txt and prediction_results_highestscore.csv (the original's layout and
    consensus), chunks.tsv (margins, confidence tiers), sequences.tsv (viral regions, kind, tiers),
    viral_regions.tsv/.bed/.fa, viral.fa, report.html with its PNG figures, and run.json. Without
    --calibration, chunks and sequences are called by the published rule."""
    configure_logging(quiet=quiet)
    options = report_options(locals())
    from virnucpro.files.score_files import score_files_in

    files = score_files_in([*(scores or []), *(more_scores or [])])
    from virnucpro.stages.report import read_run_info, report

    extra = read_run_info(run_info) if run_info is not None else {}
    with no_trace_if_refused(outdir):
        report(
            inputs,
            prepared,
            files,
            outdir,
            options,
            extra,
            quiet=quiet,
        )
