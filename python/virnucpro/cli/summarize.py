"""`virnucpro summarize`: one table, JSON and page for a run of many samples."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import Quiet
from virnucpro.errors import InputError
from virnucpro.files.outdir import no_trace_if_refused
from virnucpro.progress import configure_logging


@app.command("summarize")
def summarize_command(
    folders: list[Path] = typer.Argument(
        None,
        help="Result folders, one per sample (the --outdir of each `virnucpro run`), in the order the "
        "summary lists them. A folder without run.json is listed as a failed sample; a folder that "
        "does not exist is an error.",
        show_default=False,
    ),
    outdir: Path = typer.Option(
        ..., "--outdir", "-o", help="Folder for summary.tsv, summary.json, summary.html and *_mqc.json."
    ),
    samples: list[str] = typer.Option(
        None,
        "--sample",
        help="The sample name of each folder, in order (repeat once per folder). Default: the folders' names.",
        show_default=False,
    ),
    manifest: Path = typer.Option(
        None,
        "--manifest",
        help="A TSV of the samples instead of folders: columns sample, status (finished/failed), "
        "failed_stage (PREPARE/EMBED/REPORT or empty), folder (relative to the manifest) and optional "
        "report (the link to the sample's report.html, relative to --outdir). What the pipeline's "
        "SUMMARY task writes.",
        show_default=False,
    ),
    quiet: Quiet = False,
) -> None:
    """Summarise many samples' results: summary.tsv and summary.json (a row per sample: counts of
    sequences, chunks, viral calls by confidence, viral regions, calibration), summary.html (a bar
    and a link to report.html per sample) and MultiQC custom content (*_mqc.json).

    Every count is read from the sample's own sequences.tsv, viral_regions.tsv and run.json."""
    configure_logging(quiet=quiet)
    from virnucpro.files.manifest import folder_samples, read_manifest
    from virnucpro.stages.summarize import summarize

    if manifest is not None and (folders or samples):
        raise InputError("--manifest lists the samples: give no result folders or --sample with it")
    if manifest is None and not folders:
        raise InputError("give the result folders of the samples, or --manifest FILE")
    specs = read_manifest(manifest) if manifest is not None else folder_samples(folders, samples)
    with no_trace_if_refused(outdir):
        summarize(specs, outdir, from_manifest=manifest is not None)
