"""`virnucpro prepare`: chunk, translate in six frames, write the frame shards."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.defaults import DEFAULT_SHARD_SIZE
from virnucpro.progress import configure_logging


@app.command("prepare")
def prepare_command(
    input: Path = typer.Argument(
        ..., help="DNA reads or contigs: FASTA or FASTQ, plain or gzip (recognised by content)."
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for chunk_frames.tsv and shards/."),
    chunk_size: int = typer.Option(
        500, "--chunk-size", help="Chunk length in bp: 300 or 500, matching the classifier."
    ),
    shard_size: int = typer.Option(
        DEFAULT_SHARD_SIZE, "--shard-size", help="Frame records per shard file (the unit of GPU work)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, warnings and errors only."),
) -> None:
    """Cut sequences into chunks, translate each in six frames, and shard the stop-free frames.

    Writes OUTDIR/chunk_frames.tsv (every chunk), OUTDIR/input_sequences.tsv, OUTDIR/shards/
    shard_NNNNN.nucleotide.fa and .protein.faa, and OUTDIR/prepare.json last.
    """
    from virnucpro.prepare import prepare

    configure_logging(quiet=quiet)
    prepare(input, outdir, chunk_size=chunk_size, shard_size=shard_size, quiet=quiet)
