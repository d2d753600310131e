"""`virnucpro embed`: both embeddings of prepared shards, both models resident in each worker
(and, with --classifier, the scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import (
    EMBED_OUTDIR_HELP,
    BatchSize,
    ClassifierRevision,
    Devices,
    DnabertModel,
    DnabertRevision,
    EmbeddingDtype,
    EsmModel,
    EsmRevision,
    KeepEmbeddings,
    Precision,
    Quiet,
    ThreadsPerWorker,
    TokensPerBatch,
    Workers,
    embedding_options,
)
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICES,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_EMBEDDING_DTYPE,
    DEFAULT_ESM_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
)
from virnucpro.progress import configure_logging


@app.command("embed")
def embed_command(
    shards: list[Path] = typer.Argument(
        ...,
        help="prepare's shard files: shard_NNNNN.nucleotide.fa and shard_NNNNN.protein.faa, both of each shard.",
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=EMBED_OUTDIR_HELP.format(kind="{dnabert,esm}")),
    dnabert_model: DnabertModel = DEFAULT_DNABERT_MODEL,
    dnabert_revision: DnabertRevision = None,
    esm_model: EsmModel = DEFAULT_ESM_MODEL,
    esm_revision: EsmRevision = None,
    devices: Devices = DEFAULT_DEVICES,
    workers: Workers = DEFAULT_WORKERS,
    precision: Precision = DEFAULT_PRECISION,
    dnabert_batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    esm_tokens_per_batch: TokensPerBatch = DEFAULT_TOKENS_PER_BATCH,
    threads_per_worker: ThreadsPerWorker = DEFAULT_THREADS_PER_WORKER,
    classifier: Annotated[
        str | None,
        typer.Option(
            "--classifier",
            help="Also score each shard in the workers with this classifier (converted folder, original "
            ".pth, URL or hub id), writing shard_NNNNN.scores.parquet: the scores `predict` gives, "
            "without writing and reading the embeddings back.",
        ),
    ] = None,
    classifier_revision: ClassifierRevision = None,
    keep_embeddings: KeepEmbeddings = False,
    embedding_dtype: EmbeddingDtype = DEFAULT_EMBEDDING_DTYPE,
    quiet: Quiet = False,
) -> None:
    """Embed prepared shards with both models, both resident in each worker: DNABERT-S for the
    nucleotide files, ESM-2 for the protein files, paired by shard name.

    Writes OUTDIR/shard_NNNNN.dnabert.parquet and shard_NNNNN.esm.parquet per shard, byte-identical
    to what embed-dna and embed-protein write; complete outputs from an earlier run with the same
    models, revisions and precision are kept (resume). With --classifier, writes
    OUTDIR/shard_NNNNN.scores.parquet instead, and the embedding files only with --keep-embeddings.
    """
    configure_logging(quiet=quiet)
    from virnucpro.stages.embed import embed_with_both_models

    options = embedding_options(
        locals(), batch_size=dnabert_batch_size, tokens_per_batch=esm_tokens_per_batch
    )
    embed_with_both_models(shards, outdir, options, classifier, classifier_revision, quiet)
