"""`virnucpro prepare`: chunk, translate in six frames, write the frame shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import ChunkSize, Inputs, Quiet, ShardSize
from virnucpro.defaults import DEFAULT_CHUNK_SIZE, DEFAULT_SHARD_SIZE
from virnucpro.progress import configure_logging


@app.command("prepare")
def prepare_command(
    inputs: Inputs,
    outdir: Annotated[Path, typer.Option("--outdir", "-o", help="Folder for chunk_frames.tsv and shards/.")],
    chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
    shard_size: ShardSize = DEFAULT_SHARD_SIZE,
    quiet: Quiet = False,
) -> None:
    """Cut sequences into chunks, translate each in six frames, and shard the stop-free frames.

    INPUTS may be `-` (standard input, read once as a stream). Writes OUTDIR/chunk_frames.tsv
    (every chunk), OUTDIR/input_sequences.tsv, OUTDIR/shards/shard_NNNNN.nucleotide.fa and
    .protein.faa, and OUTDIR/prepare.json last.
    """
    from virnucpro.stages.prepare import prepare

    configure_logging(quiet=quiet)
    prepare(inputs, outdir, chunk_size=chunk_size, shard_size=shard_size, quiet=quiet)
