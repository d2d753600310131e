"""Command-line options that several commands share, each defined once (name, bounds, help).

Commands declare them as `workers: Workers = DEFAULT_WORKERS`; the defaults come from
`virnucpro.defaults` (typer takes a default from the signature, not from `Annotated`), and
`tests/cli/test_cli_options.py` checks that every command gives a shared option the same default and
bounds. Values a command cannot know are checked later, once, by the stage (e.g. whether the
chosen device runs `--precision fp8`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from virnucpro.defaults import (
    CHUNK_SIZES,
    EMBEDDING_DTYPES,
    MAX_COUNT,
    MAX_THREADS_PER_WORKER,
    MAX_WORKERS,
    PRECISIONS,
)
from virnucpro.embedding.options import EmbeddingOptions


def _chunk_size(value: int) -> int:
    if value not in CHUNK_SIZES:
        raise typer.BadParameter(
            f"{value} is not one of {' or '.join(map(str, CHUNK_SIZES))} (the published classifiers' sizes)"
        )
    return value


def _precision(value: str) -> str:
    if value not in PRECISIONS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PRECISIONS)}")
    return value


EMBED_OUTDIR_HELP = "Folder for the shard_NNNNN.{kind}.parquet files (created if missing)."
REVISION_HELP = (
    "Hub revision (branch, tag or commit) of {what}; default main. The resolved commit is recorded."
)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, warnings and errors only.")]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Start over: remove what an earlier run of this command wrote into OUTDIR (its own files "
        "only) instead of resuming.",
    ),
]
Inputs = Annotated[
    list[Path],
    typer.Argument(
        help="DNA reads or contigs: FASTA or FASTQ, plain or gzip (recognised by content). Several "
        "files are one sample, read in the given order.",
        show_default=False,
    ),
]
ChunkSize = Annotated[
    int,
    typer.Option(
        "--chunk-size",
        callback=_chunk_size,
        help="Chunk length in bp: 300 or 500, matching the classifier (picks the published one).",
    ),
]
ShardSize = Annotated[
    int,
    typer.Option(
        "--shard-size",
        min=1,
        max=MAX_COUNT,
        help="Frame records per shard file (the unit of work and of resume).",
    ),
]

# --- Models ---
DnabertModel = Annotated[str, typer.Option("--dnabert-model", help="DNABERT-S: hub id, URL or local folder.")]
DnabertRevision = Annotated[
    str | None, typer.Option("--dnabert-revision", help=REVISION_HELP.format(what="--dnabert-model"))
]
EsmModel = Annotated[str, typer.Option("--esm-model", help="ESM-2: hub id, URL or local folder.")]
EsmRevision = Annotated[
    str | None, typer.Option("--esm-revision", help=REVISION_HELP.format(what="--esm-model"))
]
ClassifierRevision = Annotated[
    str | None, typer.Option("--classifier-revision", help=REVISION_HELP.format(what="--classifier"))
]
# embed-dna and embed-protein name their one model `--model`.
EmbedDnaModel = Annotated[
    str,
    typer.Option(
        "--model",
        help="DNABERT-S: hub id, URL or local folder (config, weights, tokenizer.json).",
    ),
]
EmbedProteinModel = Annotated[
    str,
    typer.Option(
        "--model",
        help="ESM-2: hub id, URL or local transformers folder (config, weights, vocab.txt).",
    ),
]
EmbedRevision = Annotated[str | None, typer.Option("--revision", help=REVISION_HELP.format(what="--model"))]

# --- Embedding execution: speed, never results (except --precision) ---
Devices = Annotated[
    str,
    typer.Option(
        "--devices",
        help="auto (every visible GPU, else CPU), cpu, cuda (every visible GPU) or cuda:0,1 (those GPUs). "
        "One worker per GPU; CUDA_VISIBLE_DEVICES limits what is visible.",
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        max=MAX_WORKERS,
        help="Embedding worker processes on CPU (--devices cpu, or auto without a GPU); on GPUs one per GPU.",
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        callback=_precision,
        help="fp32 (what the published classifiers were trained on), bf16 (mixed: bf16 matmuls, float32 "
        "residual stream, LayerNorm, softmax and pooling; runs on CPU too), fp16, or fp8 (ESM-2's linear "
        "layers in float8; GPUs of compute capability 9.0+).",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "--dnabert-batch-size",
        min=1,
        max=MAX_COUNT,
        help="DNABERT-S sequences per model call (length-sorted); halved on CUDA OOM.",
    ),
]
TokensPerBatch = Annotated[
    int,
    typer.Option(
        "--tokens-per-batch",
        "--esm-tokens-per-batch",
        min=1,
        max=MAX_COUNT,
        help="ESM-2 padded tokens (sequences x longest, <cls>/<eos> included) per model call; halved on "
        "CUDA OOM.",
    ),
]
ThreadsPerWorker = Annotated[
    int,
    typer.Option(
        "--threads-per-worker",
        min=1,
        max=MAX_THREADS_PER_WORKER,
        help="CPU threads per worker. Fixed rather than derived from the number of workers, so any "
        "--workers gives byte-identical files; raise it for a single CPU worker on a many-core machine.",
    ),
]


def _embedding_dtype(value: str) -> str:
    if value not in EMBEDDING_DTYPES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(EMBEDDING_DTYPES)}")
    return value


# --- Scoring where the embeddings are made ---
Classifier = Annotated[
    str | None,
    typer.Option(
        "--classifier",
        help="Classifier: converted folder, original .pth, URL or hub id (default: the published "
        "500_model.pth or 300_model.pth matching --chunk-size).",
    ),
]
KeepEmbeddings = Annotated[
    bool,
    typer.Option(
        "--keep-embeddings",
        help="Also keep the embedding files (shard_NNNNN.dnabert/.esm.parquet), for training or "
        "re-scoring; 134 MB per 10,000 frames in float32. Scores are made in the embedding workers "
        "either way.",
    ),
]
EmbeddingDtype = Annotated[
    str,
    typer.Option(
        "--embedding-dtype",
        callback=_embedding_dtype,
        help="How kept embeddings are stored: float32 (exact) or float16 (half the disk, recorded in "
        "each file; scores are always made from the float32 vectors).",
    ),
]

# --- Calls ---
MinViralFraction = Annotated[
    float,
    typer.Option(
        "--min-viral-fraction",
        min=0.0,
        max=1.0,
        help="A sequence is called virus when at least this fraction (0 to 1) of its scored chunks is viral.",
    ),
]


def embedding_options(values: dict, **overrides) -> EmbeddingOptions:
    """The embedding options among a command's parameters (`values`, its `locals()`: the commands
    name them alike, and those a command does not have keep their defaults), then `overrides` for
    parameters named otherwise (`embed-dna --model` is the DNABERT-S model)."""
    names = {field.name for field in dataclasses.fields(EmbeddingOptions)}
    return EmbeddingOptions(**{name: value for name, value in values.items() if name in names}, **overrides)
