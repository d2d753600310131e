"""`virnucpro run`: the whole pipeline in one command, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import (
    BatchSize,
    ChunkSize,
    Classifier,
    ClassifierRevision,
    Devices,
    DnabertModel,
    DnabertRevision,
    EmbeddingDtype,
    EsmModel,
    EsmRevision,
    Force,
    Inputs,
    KeepEmbeddings,
    MinViralFraction,
    Precision,
    Quiet,
    ShardSize,
    ThreadsPerWorker,
    TokensPerBatch,
    Workers,
    embedding_options,
)
from virnucpro.cli.report_options import (
    CalibrationFile,
    ConfidenceHigh,
    ConfidenceMedium,
    RegionMaxGap,
    RegionMinChunks,
    TargetFdr,
    report_options,
)
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONFIDENCE_HIGH,
    DEFAULT_CONFIDENCE_MEDIUM,
    DEFAULT_DEVICES,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_EMBEDDING_DTYPE,
    DEFAULT_ESM_MODEL,
    DEFAULT_MIN_VIRAL_FRACTION,
    DEFAULT_PRECISION,
    DEFAULT_REGION_MAX_GAP,
    DEFAULT_REGION_MIN_CHUNKS,
    DEFAULT_SHARD_SIZE,
    DEFAULT_TARGET_FDR,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
)
from virnucpro.progress import configure_logging


@app.command("run")
def run_command(
    inputs: Inputs,
    outdir: Annotated[
        Path,
        typer.Option(
            "--outdir", "-o", help="Folder for the final outputs; intermediates go to OUTDIR/work/."
        ),
    ],
    chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
    shard_size: ShardSize = DEFAULT_SHARD_SIZE,
    dnabert_model: DnabertModel = DEFAULT_DNABERT_MODEL,
    dnabert_revision: DnabertRevision = None,
    esm_model: EsmModel = DEFAULT_ESM_MODEL,
    esm_revision: EsmRevision = None,
    classifier: Classifier = None,
    classifier_revision: ClassifierRevision = None,
    devices: Devices = DEFAULT_DEVICES,
    workers: Workers = DEFAULT_WORKERS,
    precision: Precision = DEFAULT_PRECISION,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    tokens_per_batch: TokensPerBatch = DEFAULT_TOKENS_PER_BATCH,
    threads_per_worker: ThreadsPerWorker = DEFAULT_THREADS_PER_WORKER,
    keep_embeddings: KeepEmbeddings = False,
    embedding_dtype: EmbeddingDtype = DEFAULT_EMBEDDING_DTYPE,
    min_viral_fraction: MinViralFraction = DEFAULT_MIN_VIRAL_FRACTION,
    region_max_gap: RegionMaxGap = DEFAULT_REGION_MAX_GAP,
    region_min_chunks: RegionMinChunks = DEFAULT_REGION_MIN_CHUNKS,
    confidence_high: ConfidenceHigh = DEFAULT_CONFIDENCE_HIGH,
    confidence_medium: ConfidenceMedium = DEFAULT_CONFIDENCE_MEDIUM,
    target_fdr: TargetFdr = DEFAULT_TARGET_FDR,
    calibration: CalibrationFile = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Run every stage: prepare, embed (DNABERT-S, ESM-2) and score, report.

    Rerunning the same command resumes: finished shards are not recomputed. A rerun with a parameter
    that changes results (the input's content, chunk or shard size, a model, precision, classifier)
    is refused unless --force. Final outputs: see `virnucpro report --help`."""
    configure_logging(quiet=quiet)
    from virnucpro.stages.run import RunOptions, run

    options = RunOptions(
        embedding=embedding_options(locals()),
        report=report_options(locals()),
        classifier=classifier,
        classifier_revision=classifier_revision,
        shard_size=shard_size,
    )
    run(inputs, outdir, options, force=force, quiet=quiet)
