"""`virnucpro predict`: score each shard's joined embeddings with the classifier."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import ClassifierRevision, Quiet
from virnucpro.files.outdir import no_trace_if_refused
from virnucpro.progress import configure_logging


@app.command("predict")
def predict_command(
    embedding_files: list[Path] = typer.Argument(
        ...,
        help="The shards' shard_NNNNN.dnabert.parquet and shard_NNNNN.esm.parquet files, paired by "
        "shard name.",
    ),
    classifier: str = typer.Option(
        ...,
        "--classifier",
        help="Classifier: a converted folder (model.safetensors + config.json), an original .pth, a URL "
        "or a hub id.",
    ),
    classifier_revision: ClassifierRevision = None,
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for shard_NNNNN.scores.parquet."),
    quiet: Quiet = False,
) -> None:
    """Score each shard's embeddings with the classifier.

    Joins each shard's DNABERT-S and ESM-2 embeddings by id, concatenates them (DNABERT-S first),
    scores them in eval mode and writes OUTDIR/shard_NNNNN.scores.parquet (id, score_others,
    score_virus). Complete score files made from the same inputs are kept."""
    configure_logging(quiet=quiet)
    from virnucpro.stages.predict import predict_files

    with no_trace_if_refused(outdir):
        predict_files(embedding_files, classifier, outdir, revision=classifier_revision, quiet=quiet)
