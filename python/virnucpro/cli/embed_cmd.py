"""`virnucpro embed` (both models in each worker), `embed-dna` and `embed-protein`: the embedding
worker pool over shard files."""

from __future__ import annotations

from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_ESM_MODEL,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
)
from virnucpro.progress import configure_logging

OUTDIR_HELP = "Folder for the shard_NNNNN.{kind}.parquet files (created if missing)."
REVISION_HELP = "Hub revision (branch, tag or commit) of a hub model; default main. Its commit is recorded."
DEVICES_HELP = (
    "auto (every visible GPU, else CPU), cpu, cuda (every visible GPU) or cuda:0,1 (those GPUs). "
    "One worker per GPU; CUDA_VISIBLE_DEVICES limits what is visible."
)
WORKERS_HELP = "Worker processes on CPU (--devices cpu, or auto without a GPU); on GPUs one per GPU."
PRECISION_HELP = (
    "fp32 (default; what the published classifiers were trained on), bf16 (mixed: bf16 matmuls, float32 "
    "residual stream, LayerNorm, softmax and pooling; runs on CPU too), fp16, or fp8 (ESM-2 linear "
    "layers in float8; Hopper GPUs or newer)."
)
THREADS_HELP = (
    "CPU threads per worker. Fixed rather than derived from the number of workers, so any --workers "
    "gives byte-identical files; raise it for a single CPU worker on a many-core machine."
)
QUIET_HELP = "No progress, warnings and errors only."

# Options both commands take (typer accepts one OptionInfo in several signatures).
REVISION = typer.Option(None, "--revision", help=REVISION_HELP)
DEVICES = typer.Option("auto", "--devices", help=DEVICES_HELP)
WORKERS = typer.Option(1, "--workers", min=1, help=WORKERS_HELP)
PRECISION = typer.Option("fp32", "--precision", help=PRECISION_HELP)
THREADS_PER_WORKER = typer.Option(
    DEFAULT_THREADS_PER_WORKER, "--threads-per-worker", min=1, help=THREADS_HELP
)
QUIET = typer.Option(False, "--quiet", "-q", help=QUIET_HELP)


def _embed(kind: str, shards: list[Path], outdir: Path, model: str, quiet: bool, **options) -> None:
    configure_logging(quiet=quiet)
    from virnucpro.embedding.pool import embed_files

    embed_files(kind, shards, outdir, model, quiet=quiet, **options)


@app.command("embed-dna")
def embed_dna_command(
    shards: list[Path] = typer.Argument(
        ..., help="Nucleotide shards (shard_NNNNN.nucleotide.fa) from prepare."
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=OUTDIR_HELP.format(kind="dnabert")),
    model: str = typer.Option(
        DEFAULT_DNABERT_MODEL,
        "--model",
        help="DNABERT-S: hub id, URL or local folder (config, weights, tokenizer.json).",
    ),
    revision: str | None = REVISION,
    devices: str = DEVICES,
    workers: int = WORKERS,
    precision: str = PRECISION,
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE,
        "--batch-size",
        min=1,
        help="Sequences per model call (length-sorted); halved on CUDA OOM.",
    ),
    threads_per_worker: int = THREADS_PER_WORKER,
    quiet: bool = QUIET,
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
    model: str = typer.Option(
        DEFAULT_ESM_MODEL,
        "--model",
        help="ESM-2: hub id, URL or local transformers folder (config, weights, vocab.txt).",
    ),
    revision: str | None = REVISION,
    devices: str = DEVICES,
    workers: int = WORKERS,
    precision: str = PRECISION,
    tokens_per_batch: int = typer.Option(
        DEFAULT_TOKENS_PER_BATCH,
        "--tokens-per-batch",
        min=1,
        help="Padded tokens (sequences x longest, <cls>/<eos> included) per model call; halved on CUDA OOM.",
    ),
    threads_per_worker: int = THREADS_PER_WORKER,
    quiet: bool = QUIET,
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


@app.command("embed")
def embed_command(
    shards: list[Path] = typer.Argument(
        ...,
        help="prepare's shard files: shard_NNNNN.nucleotide.fa and shard_NNNNN.protein.faa, both of each shard.",
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help=OUTDIR_HELP.format(kind="{dnabert,esm}")),
    dnabert_model: str = typer.Option(
        DEFAULT_DNABERT_MODEL, "--dnabert-model", help="DNABERT-S: hub id, URL or local folder."
    ),
    dnabert_revision: str | None = typer.Option(
        None, "--dnabert-revision", help="Hub revision of --dnabert-model (default main)."
    ),
    esm_model: str = typer.Option(
        DEFAULT_ESM_MODEL, "--esm-model", help="ESM-2: hub id, URL or local folder."
    ),
    esm_revision: str | None = typer.Option(
        None, "--esm-revision", help="Hub revision of --esm-model (default main)."
    ),
    devices: str = DEVICES,
    workers: int = WORKERS,
    precision: str = PRECISION,
    dnabert_batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE,
        "--dnabert-batch-size",
        min=1,
        help="DNABERT-S sequences per model call (length-sorted); halved on CUDA OOM.",
    ),
    esm_tokens_per_batch: int = typer.Option(
        DEFAULT_TOKENS_PER_BATCH,
        "--esm-tokens-per-batch",
        min=1,
        help="ESM-2 padded tokens (sequences x longest, <cls>/<eos> included) per model call; halved on CUDA OOM.",
    ),
    threads_per_worker: int = THREADS_PER_WORKER,
    quiet: bool = QUIET,
) -> None:
    """Embed prepared shards with both models, both resident in each worker: DNABERT-S for the
    nucleotide files, ESM-2 for the protein files, paired by shard name.

    Writes OUTDIR/shard_NNNNN.dnabert.parquet and shard_NNNNN.esm.parquet per shard, byte-identical
    to what embed-dna and embed-protein write; complete outputs from an earlier run with the same
    models, revisions and precision are kept (resume).
    """
    configure_logging(quiet=quiet)
    from virnucpro.embedding.pool import embed_shards

    embed_shards(
        shards,
        outdir,
        dnabert_model,
        esm_model,
        dnabert_revision=dnabert_revision,
        esm_revision=esm_revision,
        devices=devices,
        workers=workers,
        precision=precision,
        batch_size=dnabert_batch_size,
        tokens_per_batch=esm_tokens_per_batch,
        threads_per_worker=threads_per_worker,
        quiet=quiet,
    )
