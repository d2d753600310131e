"""The two embedding models behind one interface, and the batched loop with out-of-memory back-off.

An `Embedder` turns sequences into token ids, plans batches and returns pooled float32 vectors for
a padded batch. `embed_sequences` runs the plan and puts rows back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from virnucpro.defaults import DEFAULT_BATCH_SIZE, DEFAULT_TOKENS_PER_BATCH
from virnucpro.embedding.batching import (
    batches_by_count,
    batches_by_tokens,
    masked_mean,
    pad_right,
    split_batch,
)
from virnucpro.errors import InputError, VirNucProError
from virnucpro.progress import log

KINDS = ("dnabert", "esm")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
POOLING = {
    "dnabert": "mean over all tokens incl. [CLS] and [SEP]",
    "esm": "mean over residue positions 1..min(len,1024)",
}


class DnabertEmbedder:
    """DNABERT-S: `[CLS] tokens [SEP]`, last hidden state, mean over every real token."""

    kind = "dnabert"

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype, batch_size: int):
        from virnucpro.models.dnabert_s import load_dnabert

        self.model, self.tokenizer = load_dnabert(folder, device, dtype)
        self.device = device
        self.batch_size = batch_size
        self.pad_id = self.tokenizer.pad_id
        self.dim = self.model.config.hidden_size

    def encode(self, sequences: Sequence[str]) -> list[list[int]]:
        return self.tokenizer.encode(list(sequences))

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        return batches_by_count(lengths, self.batch_size)

    @torch.inference_mode()
    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.device), mask.to(self.device)
        return masked_mean(self.model(ids, mask), mask)


class EsmEmbedder:
    """ESM-2: `<cls> residues <eos>`, `last_hidden_state`, mean over the residue positions."""

    kind = "esm"

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype, tokens_per_batch: int):
        from virnucpro.models.esm2 import load_esm

        self.model, self.encoder = load_esm(folder, device, dtype)
        self.device = device
        self.tokens_per_batch = tokens_per_batch
        self.pad_id = self.encoder.pad_id
        self.dim = self.model.config.hidden_size

    def encode(self, sequences: Sequence[str]) -> list[list[int]]:
        return self.encoder.encode(list(sequences))

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        return batches_by_tokens(lengths, self.tokens_per_batch)

    @torch.inference_mode()
    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        # Residues only: drop <cls> (position 0) and each row's <eos> (its last real position).
        residues = mask.clone()
        residues[:, 0] = 0
        residues[torch.arange(len(mask), device=mask.device), mask.sum(dim=1) - 1] = 0
        return masked_mean(hidden, residues)


Embedder = DnabertEmbedder | EsmEmbedder


def load_embedder(
    kind: str,
    folder: str | Path,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokens_per_batch: int | None = None,
) -> Embedder:
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    dtype = PRECISIONS[precision]
    if kind == "dnabert":
        return DnabertEmbedder(Path(folder), device, dtype, batch_size)
    if kind == "esm":
        return EsmEmbedder(Path(folder), device, dtype, tokens_per_batch or DEFAULT_TOKENS_PER_BATCH)
    raise ValueError(f"unknown embedding kind {kind!r}")


def check_model_folder(kind: str, folder: str | Path) -> None:
    """Raise `InputError` naming what is missing when `folder` is not a model of `kind`."""
    from virnucpro.models import dnabert_s, esm2

    (dnabert_s if kind == "dnabert" else esm2).check_folder(Path(folder))


def release_cuda_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def embed_sequences(
    embedder: Embedder,
    sequences: Sequence[str],
    on_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Pooled float32 vectors [len(sequences), dim], row i for sequence i.

    A CUDA out-of-memory halves the batch and retries, down to one sequence; the smaller size
    stays for the rest of the call, and each reduction is logged.
    """
    tokens = embedder.encode(sequences)
    out = np.empty((len(tokens), embedder.dim), dtype=np.float32)
    max_rows: int | None = None
    for planned in embedder.batches([len(t) for t in tokens]):
        pending = [planned]
        while pending:
            if should_stop is not None and should_stop():
                raise VirNucProError("stopped because another worker failed")
            batch = pending.pop(0)
            if max_rows is not None and len(batch) > max_rows:
                pending[:0] = split_batch(batch, max_rows)
                continue
            ids, mask = pad_right([tokens[i] for i in batch], embedder.pad_id)
            try:
                vectors = embedder.pooled(ids, mask)
            except torch.cuda.OutOfMemoryError as err:
                release_cuda_memory()
                if len(batch) == 1:
                    raise VirNucProError(
                        f"CUDA out of memory on a single sequence of {ids.shape[1]} tokens"
                    ) from err
                max_rows = len(batch) // 2
                log.warning(
                    "CUDA out of memory on a batch of %d sequences x %d tokens; retrying with batches of %d",
                    len(batch),
                    ids.shape[1],
                    max_rows,
                )
                pending.insert(0, batch)
                continue
            out[batch] = vectors.cpu().numpy()
            if on_batch is not None:
                on_batch(len(batch))
    return out
