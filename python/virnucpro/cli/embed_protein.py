"""`virnucpro embed-protein`: protein shards to ESM-2 embeddings in the worker pool."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import (
    EMBED_OUTDIR_HELP,
    Devices,
    EmbedProteinModel,
    EmbedRevision,
    Precision,
    Quiet,
    ThreadsPerWorker,
    TokensPerBatch,
    Workers,
    embedding_options,
)
from virnucpro.defaults import (
    DEFAULT_DEVICES,
    DEFAULT_ESM_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
)
from virnucpro.progress import configure_logging


@app.command("embed-protein")
def embed_protein_command(
    shards: list[Path] = typer.Argument(..., help="Protein shards (shard_NNNNN.protein.faa) from prepare."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=EMBED_OUTDIR_HELP.format(kind="esm")),
    model: EmbedProteinModel = DEFAULT_ESM_MODEL,
    revision: EmbedRevision = None,
    devices: Devices = DEFAULT_DEVICES,
    workers: Workers = DEFAULT_WORKERS,
    precision: Precision = DEFAULT_PRECISION,
    tokens_per_batch: TokensPerBatch = DEFAULT_TOKENS_PER_BATCH,
    threads_per_worker: ThreadsPerWorker = DEFAULT_THREADS_PER_WORKER,
    quiet: Quiet = False,
) -> None:
    """Embed protein shards with ESM-2: mean of the final layer over residues 1..min(len, 1024),
    without <cls>, <eos> or padding (2560 values for the 3B model).

    Writes OUTDIR/shard_NNNNN.esm.parquet per input; complete outputs from an earlier run with the
    same model, revision and precision are kept (resume).
    """
    configure_logging(quiet=quiet)
    from virnucpro.stages.embed import embed_with_one_model

    options = embedding_options(locals(), esm_model=model, esm_revision=revision)
    embed_with_one_model("esm", shards, outdir, options, quiet)
