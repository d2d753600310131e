"""Default parameters and model sources, shared by the CLI and the stages.

Kept free of heavy imports (torch, transformers, pyarrow, matplotlib): the CLI reads these to build
its options, and `virnucpro --help` or a Nextflow task should not pay for loading a model library.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_SIZES = (300, 500)  # the chunk sizes of the published classifiers
DEFAULT_CHUNK_SIZE = 500
DEFAULT_SHARD_SIZE = 10_000  # frame records per shard file

DEFAULT_DNABERT_MODEL = "zhihan1996/DNABERT-S"
DEFAULT_ESM_MODEL = "facebook/esm2_t36_3B_UR50D"
# The published classifiers, from the original repository at the commit that added them.
PUBLISHED_CLASSIFIERS = {
    size: f"https://github.com/Li-Jing-1997/VirNucPro/raw/0f93f2755a7ea1acd3ff1bcf182892f960ef3326/{size}_model.pth"
    for size in CHUNK_SIZES
}

# A model given as `owner/name` is a Hugging Face hub id (main.nf checks the same pattern).
HUB_ID_PATTERN = r"^[A-Za-z0-9][\w.-]*/[\w.-]+$"

DEFAULT_DEVICES = "auto"  # every visible GPU, else CPU
DEFAULT_WORKERS = 1  # CPU worker processes (on GPUs: one per GPU)
PRECISIONS = ("fp32", "bf16", "fp16", "fp8")
DEFAULT_PRECISION = "fp32"  # what the published classifiers were trained on
# fp8 runs on GPUs of this compute capability or newer (Hopper).
FP8_MIN_COMPUTE_CAPABILITY = (9, 0)
DEFAULT_BATCH_SIZE = 256  # DNABERT-S sequences per batch (--batch-size)
DEFAULT_TOKENS_PER_BATCH = 16384  # ESM-2 padded tokens per batch
DEFAULT_THREADS_PER_WORKER = 1  # fixed, so results do not depend on the number of workers
# Upper bounds of the counting options, so that no value overflows the integers numpy, torch and
# the operating system take: sizes and batch settings fit 32 bits, and processes and threads stay
# within what one machine runs.
MAX_COUNT = 2**31 - 1
MAX_WORKERS = 1024
MAX_THREADS_PER_WORKER = 1024
EMBEDDING_DTYPES = ("float32", "float16")  # how kept embeddings are stored
DEFAULT_EMBEDDING_DTYPE = "float32"

DEFAULT_MIN_VIRAL_FRACTION = 0.5


@dataclass(frozen=True)
class TrainSettings:
    """Training settings: the original's (SGD, StepLR, batch 32, patience 5) plus a real split."""

    learning_rate: float = 2e-4
    momentum: float = 0.9
    lr_step: int = 10  # StepLR step, in epochs
    lr_gamma: float = 0.85
    batch_size: int = 32
    patience: int = 5  # epochs without a better validation loss before stopping
    max_epochs: int = 200
    hidden_dim: int = 512
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42


# Viral regions, confidence tiers and calibration (report).
# The report numbers a sequence's chunks in 32 bits: no sequence has more chunks than this, so a
# region setting above it is refused.
MAX_CHUNKS_PER_SEQUENCE = 2**31 - 1
DEFAULT_REGION_MAX_GAP = 1  # chunks that are not viral bridged inside a region
DEFAULT_REGION_MIN_CHUNKS = 2  # viral chunks a region needs (1 in sequences of one or two chunks)
DEFAULT_CONFIDENCE_HIGH = 0.9  # the winning class's best score for a high-confidence chunk
DEFAULT_CONFIDENCE_MEDIUM = 0.7
DEFAULT_TARGET_FDR = 0.05
