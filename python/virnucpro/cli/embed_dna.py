"""`virnucpro embed-dna`: nucleotide shards to DNABERT-S embeddings in the worker pool."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import (
    EMBED_OUTDIR_HELP,
    BatchSize,
    Devices,
    EmbedDnaModel,
    EmbedRevision,
    Precision,
    Quiet,
    ThreadsPerWorker,
    Workers,
    embedding_options,
)
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICES,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_WORKERS,
)
from virnucpro.progress import configure_logging


@app.command("embed-dna")
def embed_dna_command(
    shards: list[Path] = typer.Argument(
        ..., help="Nucleotide shards (shard_NNNNN.nucleotide.fa) from prepare."
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=EMBED_OUTDIR_HELP.format(kind="dnabert")),
    model: EmbedDnaModel = DEFAULT_DNABERT_MODEL,
    revision: EmbedRevision = None,
    devices: Devices = DEFAULT_DEVICES,
    workers: Workers = DEFAULT_WORKERS,
    precision: Precision = DEFAULT_PRECISION,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    threads_per_worker: ThreadsPerWorker = DEFAULT_THREADS_PER_WORKER,
    quiet: Quiet = False,
) -> None:
    """Embed nucleotide shards with DNABERT-S: mean of the last hidden state over every token,
    [CLS] and [SEP] included (768 values for the real model).

    Writes OUTDIR/shard_NNNNN.dnabert.parquet per input; complete outputs from an earlier run with
    the same model, revision and precision are kept (resume).
    """
    configure_logging(quiet=quiet)
    from virnucpro.stages.embed import embed_with_one_model

    options = embedding_options(locals(), dnabert_model=model, dnabert_revision=revision)
    embed_with_one_model("dnabert", shards, outdir, options, quiet)
