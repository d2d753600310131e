"""`virnucpro train`: train the MLP classifier on labelled sequences or embeddings."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import (
    BatchSize,
    ChunkSize,
    Devices,
    DnabertModel,
    DnabertRevision,
    EsmModel,
    EsmRevision,
    Precision,
    Quiet,
    ThreadsPerWorker,
    TokensPerBatch,
    Workers,
    embedding_options,
)
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICES,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_ESM_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
    MAX_COUNT,
    TrainSettings,
)
from virnucpro.progress import configure_logging

DEFAULTS = TrainSettings()


@app.command("train")
def train_command(
    viral: list[Path] = typer.Option(
        ...,
        "--viral",
        help="Viral examples: FASTA/FASTQ files (embedded here), or folders/files of "
        "shard_NNNNN.dnabert.parquet + .esm.parquet. Repeat for several.",
    ),
    others: list[Path] = typer.Option(
        ..., "--others", help="Non-viral examples, in the same forms as --viral."
    ),
    outdir: Path = typer.Option(
        ...,
        "--outdir",
        "-o",
        help="Folder for model.safetensors, config.json and metrics.json (usable as --classifier).",
    ),
    epochs: int = typer.Option(
        DEFAULTS.max_epochs,
        "--epochs",
        min=1,
        max=MAX_COUNT,
        help="Most epochs (early stopping usually ends sooner).",
    ),
    patience: int = typer.Option(
        DEFAULTS.patience,
        "--patience",
        min=1,
        max=MAX_COUNT,
        help="Stop after this many epochs without a lower validation loss.",
    ),
    learning_rate: float = typer.Option(
        DEFAULTS.learning_rate, "--learning-rate", help="SGD learning rate (momentum 0.9)."
    ),
    train_batch_size: int = typer.Option(
        DEFAULTS.batch_size, "--train-batch-size", min=2, max=MAX_COUNT, help="Rows per training step."
    ),
    hidden_dim: int = typer.Option(
        DEFAULTS.hidden_dim, "--hidden-dim", min=1, max=1 << 16, help="Width of the hidden layer."
    ),
    validation_fraction: float = typer.Option(
        DEFAULTS.validation_fraction,
        "--validation-fraction",
        help="Share of each class held out for early stopping.",
    ),
    test_fraction: float = typer.Option(
        DEFAULTS.test_fraction,
        "--test-fraction",
        help="Share of each class held out for the reported metrics.",
    ),
    seed: int = typer.Option(
        DEFAULTS.seed,
        "--seed",
        min=0,
        max=2**32 - 1,
        help="Seed of the split, initial weights and shuffling.",
    ),
    chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
    dnabert_model: DnabertModel = DEFAULT_DNABERT_MODEL,
    dnabert_revision: DnabertRevision = None,
    esm_model: EsmModel = DEFAULT_ESM_MODEL,
    esm_revision: EsmRevision = None,
    devices: Devices = DEFAULT_DEVICES,
    workers: Workers = DEFAULT_WORKERS,
    precision: Precision = DEFAULT_PRECISION,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    tokens_per_batch: TokensPerBatch = DEFAULT_TOKENS_PER_BATCH,
    threads_per_worker: ThreadsPerWorker = DEFAULT_THREADS_PER_WORKER,
    quiet: Quiet = False,
) -> None:
    """Train the classifier on labelled sequences or embeddings.

    The original's settings (SGD lr 2e-4, momentum 0.9, StepLR(10, 0.85), batch 32, early stopping
    with patience 5) on a seeded train/validation/test split of the input sequences (all frames of
    one sequence on one side): early stopping watches the validation loss; metrics.json reports
    accuracy, precision, recall, F1 and AUROC on the test split."""
    configure_logging(quiet=quiet)
    from virnucpro.stages.train import train

    settings = TrainSettings(
        learning_rate=learning_rate,
        batch_size=train_batch_size,
        patience=patience,
        max_epochs=epochs,
        hidden_dim=hidden_dim,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    options = embedding_options(locals())
    train(viral, others, outdir, settings, options, quiet=quiet)
