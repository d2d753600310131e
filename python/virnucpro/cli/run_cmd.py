"""`virnucpro run`: the whole pipeline in one command, resumable. The model and embedding options
are defined here once and shared with `virnucpro train`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from virnucpro.cli.app import app
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_ESM_MODEL,
    DEFAULT_MIN_VIRAL_FRACTION,
    DEFAULT_SHARD_SIZE,
)
from virnucpro.progress import configure_logging

if TYPE_CHECKING:  # the stage modules load torch; commands import them when they run
    from virnucpro.pipeline import EmbeddingOptions

CHUNK_SIZE = typer.Option(
    DEFAULT_CHUNK_SIZE,
    "--chunk-size",
    help="Chunk length in bp: 300 or 500 (picks the published classifier).",
)
DNABERT_MODEL = typer.Option(
    DEFAULT_DNABERT_MODEL, "--dnabert-model", help="DNABERT-S: hub id, URL or local folder."
)
DNABERT_REVISION = typer.Option(
    None,
    "--dnabert-revision",
    help="Hub revision (branch, tag or commit) of --dnabert-model (default: main).",
)
ESM_MODEL = typer.Option(DEFAULT_ESM_MODEL, "--esm-model", help="ESM-2: hub id, URL or local folder.")
ESM_REVISION = typer.Option(None, "--esm-revision", help="Hub revision of --esm-model (default: main).")
DEVICES = typer.Option(
    "auto", "--devices", help="auto (every visible GPU, else CPU), cpu, cuda (every GPU) or cuda:0,1."
)
WORKERS = typer.Option(1, "--workers", help="Embedding worker processes on CPU (on GPUs: one per GPU).")
PRECISION = typer.Option(
    "fp32", "--precision", help="fp32 (parity with the published classifier), bf16 or fp16."
)
BATCH_SIZE = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", help="DNABERT-S sequences per batch.")
TOKENS_PER_BATCH = typer.Option(
    None, "--tokens-per-batch", help="ESM-2 token budget per batch (default: the engine's)."
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress, warnings and errors only.")


def embedding_options(
    chunk_size, dnabert_model, dnabert_revision, esm_model, esm_revision, devices, workers, precision,
    batch_size, tokens_per_batch,
) -> EmbeddingOptions:  # fmt: skip
    from virnucpro.pipeline import EmbeddingOptions

    return EmbeddingOptions(
        chunk_size=chunk_size,
        dnabert_model=dnabert_model,
        dnabert_revision=dnabert_revision,
        esm_model=esm_model,
        esm_revision=esm_revision,
        devices=devices,
        workers=workers,
        precision=precision,
        batch_size=batch_size,
        tokens_per_batch=tokens_per_batch,
    )


@app.command("run")
def run_command(
    input: Path = typer.Argument(..., help="DNA reads or contigs: FASTA or FASTQ, plain or gzip."),
    outdir: Path = typer.Option(
        ..., "--outdir", "-o", help="Folder for the final outputs; intermediates go to OUTDIR/work/."
    ),
    chunk_size: int = CHUNK_SIZE,
    shard_size: int = typer.Option(
        DEFAULT_SHARD_SIZE, "--shard-size", help="Frames per shard file (the unit of work and of resume)."
    ),
    dnabert_model: str = DNABERT_MODEL,
    dnabert_revision: str = DNABERT_REVISION,
    esm_model: str = ESM_MODEL,
    esm_revision: str = ESM_REVISION,
    classifier: str = typer.Option(
        None,
        "--classifier",
        help="Classifier: converted folder, original .pth, URL or hub id (default: the published "
        "500_model.pth or 300_model.pth matching --chunk-size).",
    ),
    classifier_revision: str = typer.Option(
        None, "--classifier-revision", help="Hub revision of --classifier (default: main)."
    ),
    devices: str = DEVICES,
    workers: int = WORKERS,
    precision: str = PRECISION,
    batch_size: int = BATCH_SIZE,
    tokens_per_batch: int = TOKENS_PER_BATCH,
    min_viral_fraction: float = typer.Option(
        DEFAULT_MIN_VIRAL_FRACTION,
        "--min-viral-fraction",
        help="A sequence is called virus when at least this fraction (0 to 1) of its scored chunks is viral.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Start over: delete OUTDIR/work and earlier outputs instead of resuming."
    ),
    quiet: bool = QUIET,
) -> None:
    """Run every stage: prepare, embed (DNABERT-S, ESM-2), predict, report.

    Rerunning the same command resumes: finished shards are not recomputed. A rerun with a parameter
    that changes results (input, chunk or shard size, a model, precision, classifier) is refused
    unless --force. Final outputs: see `virnucpro report --help`."""
    from virnucpro.pipeline import run

    configure_logging(quiet=quiet)
    options = embedding_options(
        chunk_size, dnabert_model, dnabert_revision, esm_model, esm_revision, devices, workers, precision,
        batch_size, tokens_per_batch,
    )  # fmt: skip
    run(
        input,
        outdir,
        options,
        classifier=classifier,
        classifier_revision=classifier_revision,
        shard_size=shard_size,
        min_viral_fraction=min_viral_fraction,
        force=force,
        quiet=quiet,
    )
