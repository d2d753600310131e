"""`virnucpro model-identity`: what the outputs record as a local model's revision."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app


@app.command("model-identity")
def model_identity_command(
    model: Path = typer.Argument(..., exists=True, help="A local model folder (or file)."),
) -> None:
    """Print a local model's identity, `local:sha256=<hash of its files>`: the revision that
    embedding and score files record for it.

    Passing it as the model's --revision spares the command from hashing the files again (the
    Nextflow pipeline computes it once per run); it is trusted as given.
    """
    from virnucpro.models.sources import resolve_model

    typer.echo(resolve_model(model).provenance)
