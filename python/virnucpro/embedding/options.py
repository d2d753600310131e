"""The embedding settings as one object, passed from the command line to the worker pool."""

from __future__ import annotations

from dataclasses import dataclass

from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICES,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_EMBEDDING_DTYPE,
    DEFAULT_ESM_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
)


@dataclass(frozen=True)
class EmbeddingOptions:
    """How sequences are prepared and embedded: built once from the command line (`run`, `train`,
    `embed`, `embed-dna`, `embed-protein`; a command without an option keeps its default) and passed
    down to the worker pool. `embed-dna` uses the DNABERT-S fields, `embed-protein` the ESM-2 ones."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    dnabert_model: str = DEFAULT_DNABERT_MODEL
    dnabert_revision: str | None = None
    esm_model: str = DEFAULT_ESM_MODEL
    esm_revision: str | None = None
    devices: str = DEFAULT_DEVICES
    workers: int = DEFAULT_WORKERS
    precision: str = DEFAULT_PRECISION
    batch_size: int = DEFAULT_BATCH_SIZE
    tokens_per_batch: int = DEFAULT_TOKENS_PER_BATCH
    threads_per_worker: int = DEFAULT_THREADS_PER_WORKER
    keep_embeddings: bool = False  # `run` scores in the embedding workers; embeddings are kept on request
    embedding_dtype: str = DEFAULT_EMBEDDING_DTYPE

    def model(self, kind: str) -> tuple[str, str | None]:
        """The model and revision that embed `kind` ("dnabert" or "esm")."""
        if kind == "dnabert":
            return self.dnabert_model, self.dnabert_revision
        return self.esm_model, self.esm_revision
