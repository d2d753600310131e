"""`virnucpro calibrate`: thresholds that meet a target false discovery rate on a labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import Quiet
from virnucpro.cli.report_options import TargetFdr
from virnucpro.defaults import DEFAULT_TARGET_FDR
from virnucpro.errors import InputError
from virnucpro.progress import configure_logging


@app.command("calibrate")
def calibrate_command(
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            help="TSV with the header `sequence_id<TAB>label` and a label `virus` or `others` per sequence.",
        ),
    ],
    outdir: Annotated[
        Path,
        typer.Option(
            "--outdir",
            "-o",
            help="Folder for calibration.json, calibration.tsv and calibration_reliability.png.",
        ),
    ],
    chunks: Annotated[
        list[Path] | None,
        typer.Option(
            "--chunks",
            help="chunks.tsv of `virnucpro report` on the labelled set (repeat for several); its run.json "
            "beside it records the chunk size and classifier.",
        ),
    ] = None,
    scores: Annotated[
        list[Path] | None,
        typer.Option(
            "--scores",
            help="Or the labelled set's shard_NNNNN.scores.parquet files, or a folder holding them (repeat).",
        ),
    ] = None,
    more_files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Further files of --chunks or --scores (`--scores A B C` puts B, C here).",
            show_default=False,
        ),
    ] = None,
    target_fdr: TargetFdr = DEFAULT_TARGET_FDR,
    quiet: Quiet = False,
) -> None:
    """Calibrate the calls on a labelled set: precision, recall and FDR at every threshold.

    Chunks take their sequence's label. Writes calibration.tsv (every chunk margin threshold, then
    every share of viral chunks for the sequences), calibration_reliability.png, and calibration.json
    with the lowest thresholds that meet --target-fdr (at the upper end of a 95% confidence
    interval), for `virnucpro run/report --calibration`."""
    configure_logging(quiet=quiet)
    if bool(chunks) == bool(scores):
        raise InputError(
            "calibrate: give the labelled set's --chunks files or its --scores files (one of them)"
        )
    if chunks:
        chunks = [*chunks, *(more_files or [])]
    else:
        scores = [*scores, *(more_files or [])]
    from virnucpro.stages.calibrate import calibrate_labelled_set

    calibrate_labelled_set(labels, chunks, scores, outdir, target_fdr)
