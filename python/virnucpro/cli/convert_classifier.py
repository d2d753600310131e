"""`virnucpro convert-classifier`: an original `.pth` classifier to safetensors + JSON config."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import Quiet
from virnucpro.progress import configure_logging, log


@app.command("convert-classifier")
def convert_classifier_command(
    source: str = typer.Argument(
        ...,
        help="The classifier: an original .pth (read without running pickle code), a converted folder, "
        "a URL or a hub id.",
    ),
    outdir: Path = typer.Argument(..., help="Folder to write model.safetensors and config.json into."),
    revision: str = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit) of SOURCE."),
    quiet: Quiet = False,
) -> None:
    """Convert a classifier (.pth) to safetensors + JSON config.

    Later runs then read plain tensors (model.safetensors) and a JSON config (input width, hidden
    width, classes, source) instead of a pickle."""
    configure_logging(quiet=quiet)
    from virnucpro.models.classifier_weights import convert_classifier

    config = convert_classifier(source, outdir, revision)
    log.info(
        "convert-classifier: %s -> %s (%d inputs, %d hidden, %d classes)",
        source,
        outdir,
        config.input_dim,
        config.hidden_dim,
        config.num_classes,
    )
