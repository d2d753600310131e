"""`virnucpro download-models`: pre-fetch the models for offline compute nodes."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import DnabertModel, DnabertRevision, EsmModel, EsmRevision, Quiet
from virnucpro.defaults import DEFAULT_DNABERT_MODEL, DEFAULT_ESM_MODEL, PUBLISHED_CLASSIFIERS
from virnucpro.progress import configure_logging


@app.command("download-models")
def download_models_command(
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder to fetch the models into."),
    dnabert_model: DnabertModel = DEFAULT_DNABERT_MODEL,
    dnabert_revision: DnabertRevision = None,
    esm_model: EsmModel = DEFAULT_ESM_MODEL,
    esm_revision: EsmRevision = None,
    classifier_500: str = typer.Option(
        PUBLISHED_CLASSIFIERS[500],
        "--classifier-500",
        help="Classifier for 500 bp chunks: URL, .pth, folder or hub id.",
    ),
    classifier_300: str = typer.Option(
        PUBLISHED_CLASSIFIERS[300],
        "--classifier-300",
        help="Classifier for 300 bp chunks: URL, .pth, folder or hub id.",
    ),
    quiet: Quiet = False,
) -> None:
    """Pre-fetch the default models into a folder for offline compute nodes.

    Fetches DNABERT-S, ESM-2 and both published classifiers into OUTDIR (dnabert-s/, esm2/,
    classifier-500/, classifier-300/, models.json). The classifiers are converted to safetensors +
    JSON config. Models already fetched from the same source and revision are kept."""
    configure_logging(quiet=quiet)
    from virnucpro.stages.download import ModelSource, download_models

    download_models(
        outdir,
        dnabert=ModelSource(dnabert_model, dnabert_revision),
        esm=ModelSource(esm_model, esm_revision),
        classifiers={500: ModelSource(classifier_500), 300: ModelSource(classifier_300)},
    )
