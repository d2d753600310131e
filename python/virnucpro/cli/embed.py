"""`virnucpro embed` (both models in each worker), `embed-dna` and `embed-protein`: the embedding
worker pool over shard files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import (
    BatchSize,
    ClassifierRevision,
    Devices,
    DnabertModel,
    DnabertRevision,
    EmbeddingDtype,
    EmbedDnaModel,
    EmbedProteinModel,
    EmbedRevision,
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
from virnucpro.embedding.options import EmbeddingOptions
from virnucpro.errors import InputError
from virnucpro.files.outdir import no_trace_if_refused
from virnucpro.progress import configure_logging

OUTDIR_HELP = "Folder for the shard_NNNNN.{kind}.parquet files (created if missing)."


def _embed(kind: str, shards: list[Path], outdir: Path, options: EmbeddingOptions, quiet: bool) -> None:
    configure_logging(quiet=quiet)
    from virnucpro.embedding.pool import embed_files

    with no_trace_if_refused(outdir):
        embed_files(kind, shards, outdir, options, quiet=quiet)


@app.command("embed-dna")
def embed_dna_command(
    shards: list[Path] = typer.Argument(
        ..., help="Nucleotide shards (shard_NNNNN.nucleotide.fa) from prepare."
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=OUTDIR_HELP.format(kind="dnabert")),
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
    options = embedding_options(locals(), dnabert_model=model, dnabert_revision=revision)
    _embed("dnabert", shards, outdir, options, quiet)


@app.command("embed-protein")
def embed_protein_command(
    shards: list[Path] = typer.Argument(..., help="Protein shards (shard_NNNNN.protein.faa) from prepare."),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=OUTDIR_HELP.format(kind="esm")),
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
    options = embedding_options(locals(), esm_model=model, esm_revision=revision)
    _embed("esm", shards, outdir, options, quiet)


@app.command("embed")
def embed_command(
    shards: list[Path] = typer.Argument(
        ...,
        help="prepare's shard files: shard_NNNNN.nucleotide.fa and shard_NNNNN.protein.faa, both of each shard.",
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=OUTDIR_HELP.format(kind="{dnabert,esm}")),
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
    from virnucpro.embedding.pool import Scoring, embed_shards

    with no_trace_if_refused(outdir):
        if classifier is None and (keep_embeddings or embedding_dtype != DEFAULT_EMBEDDING_DTYPE):
            raise InputError(
                "--keep-embeddings and --embedding-dtype go with --classifier (embeddings are kept without it)"
            )
        scoring = None
        if classifier is not None:
            from virnucpro.models.classifier_weights import load_classifier

            scoring = Scoring(
                load_classifier(classifier, classifier_revision), outdir, keep_embeddings, embedding_dtype
            )
        options = embedding_options(
            locals(), batch_size=dnabert_batch_size, tokens_per_batch=esm_tokens_per_batch
        )
        embed_shards(shards, outdir, options, quiet=quiet, scoring=scoring)
