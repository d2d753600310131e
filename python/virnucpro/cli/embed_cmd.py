"""`virnucpro embed-dna` and `virnucpro embed-protein`: the embedding worker pool over shard files."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import (
    BatchSize,
    Devices,
    EmbedDnaModel,
    EmbedProteinModel,
    EmbedRevision,
    Precision,
    Quiet,
    ThreadsPerWorker,
    TokensPerBatch,
    Workers,
)
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICES,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_ESM_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
)
from virnucpro.progress import configure_logging

OUTDIR_HELP = "Folder for the shard_NNNNN.{kind}.parquet files (created if missing)."


def _embed(kind: str, shards: list[Path], outdir: Path, model: str, quiet: bool, **options) -> None:
    configure_logging(quiet=quiet)
    from virnucpro.embedding.pool import embed_files
    from virnucpro.output_folder import stage_folder
    from virnucpro.paths import embedding_file, shard_of

    outputs = []
    for shard in shards:
        with contextlib.suppress(ValueError):  # a badly named input is reported by the pool
            outputs.append(embedding_file(outdir, shard_of(shard), kind))
    stage_folder(outdir, shards, outputs)
    embed_files(kind, shards, outdir, model, quiet=quiet, **options)


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
    _embed(
        "dnabert",
        shards,
        outdir,
        model,
        quiet,
        revision=revision,
        devices=devices,
        workers=workers,
        precision=precision,
        batch_size=batch_size,
        threads_per_worker=threads_per_worker,
    )


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
    _embed(
        "esm",
        shards,
        outdir,
        model,
        quiet,
        revision=revision,
        devices=devices,
        workers=workers,
        precision=precision,
        tokens_per_batch=tokens_per_batch,
        threads_per_worker=threads_per_worker,
    )
