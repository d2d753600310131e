"""`virnucpro make-test-models`: small random models with the real architectures."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.progress import configure_logging, log


@app.command("make-test-models")
def make_test_models_command(
    outdir: Path = typer.Argument(..., help="Folder to write dnabert-s/, esm2/ and classifier/ into."),
) -> None:
    """Write small random DNABERT-S, ESM-2 and classifier models for tests and the test profile.

    They have the real architectures and tokenizer types, so the pipeline runs for real, but their
    calls mean nothing. The same library versions give identical bytes on every run.
    """
    from virnucpro.stages.make_test_models import make_test_models

    configure_logging()
    make_test_models(outdir)
    log.info("test models written to %s (dnabert-s/, esm2/, classifier/)", outdir)
