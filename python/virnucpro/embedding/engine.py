"""The two embedding models behind one interface, and the batched loop that feeds them.

An `Embedder` turns sequences into a `TokenTable`, plans batches and returns pooled float32
vectors for a padded batch. `embed_table` runs the plan without waiting for the device: each batch
is padded with numpy into a pinned buffer (on CUDA), copied without blocking, and its vectors stay
on the device until the end of the shard, when one copy brings them all back and rows are put in
input order. A CUDA out-of-memory halves the batch and retries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from virnucpro.defaults import DEFAULT_BATCH_SIZE, DEFAULT_TOKENS_PER_BATCH
from virnucpro.embedding.batching import (
    TokenTable,
    batches_by_count,
    batches_by_tokens,
    length_mask,
    masked_mean,
    pad_rows,
    split_batch,
)
from virnucpro.embedding.precision import PrecisionMode, autocast, precision_mode
from virnucpro.errors import InputError, VirNucProError
from virnucpro.progress import log

KINDS = ("dnabert", "esm")
POOLING = {
    "dnabert": "mean over all tokens incl. [CLS] and [SEP]",
    "esm": "mean over residue positions 1..min(len,1024)",
}


@dataclass(frozen=True)
class KernelChoice:
    """Which attention path each model runs (None: the device's default) and whether ESM-2 is
    compiled. Every choice gives the same values within float32 rounding (tested on CPU)."""

    dnabert_attention: str | None = None  # "sdpa" or "flex"; default flex (compiled) on CUDA, sdpa on CPU
    esm_attention: str = "sdpa"  # "sdpa", "flex_attention" or "eager"
    compile_esm: bool = False


def can_compile_kernels() -> bool:
    """Whether torch.compile can build GPU kernels here: Triton, and the C compiler it needs for its
    launchers (CUDA runtime containers often have none; then DNABERT-S keeps the SDPA path)."""
    import importlib.util
    import os
    import shutil

    if importlib.util.find_spec("triton") is None:
        return False
    return any(shutil.which(c) for c in (os.environ.get("CC", ""), "cc", "gcc", "clang") if c)


class DnabertEmbedder:
    """DNABERT-S: `[CLS] tokens [SEP]`, last hidden state, mean over every real token."""

    kind = "dnabert"

    def __init__(self, folder: Path, device: torch.device, mode: PrecisionMode, batch_size: int, kernels):
        from virnucpro.models.dnabert_s import load_dnabert

        cuda = device.type == "cuda"
        attention = kernels.dnabert_attention or ("flex" if cuda and can_compile_kernels() else "sdpa")
        compiled = attention == "flex" and cuda
        self.model, self.tokenizer = load_dnabert(folder, device, mode, attention, compile_flex=compiled)
        self.device, self.mode, self.batch_size = device, mode, batch_size
        self.pad_id = self.tokenizer.pad_id
        self.dim = self.model.config.hidden_size
        self.attention_kernel = {
            "sdpa": "sdpa (dense float32 ALiBi bias)",
            "flex": f"flex_attention ({'compiled' if compiled else 'eager'}, ALiBi in score_mod)",
        }[attention]

    def encode_table(self, sequences: Sequence[str]) -> TokenTable:
        return self.tokenizer.encode_table(list(sequences))

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        return batches_by_count(lengths, self.batch_size)

    @torch.inference_mode()
    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.device), mask.to(self.device)
        with autocast(self.mode, self.device):
            hidden = self.model(ids, mask)
        return masked_mean(hidden, mask)


class EsmEmbedder:
    """ESM-2: `<cls> residues <eos>` (the whole protein), `last_hidden_state`, mean over residue
    positions 1..min(len, 1024)."""

    kind = "esm"

    def __init__(
        self, folder: Path, device: torch.device, mode: PrecisionMode, tokens_per_batch: int, kernels
    ):
        from virnucpro.models.esm2 import load_esm

        self.model, self.encoder = load_esm(folder, device, mode, kernels.esm_attention)
        if mode.fp8_linear:
            from virnucpro.embedding.fp8 import convert_linears

            try:
                convert_linears(self.model.encoder)
            except ValueError as err:
                raise InputError(f"{folder}: --precision fp8: {err}") from None
        self.forward = torch.compile(self.model, dynamic=True) if kernels.compile_esm else self.model
        self.device, self.mode, self.tokens_per_batch = device, mode, tokens_per_batch
        self.pad_id = self.encoder.pad_id
        self.dim = self.model.config.hidden_size
        self.attention_kernel = self.model.config._attn_implementation + (
            " (compiled)" if kernels.compile_esm else ""
        )

    def encode_table(self, sequences: Sequence[str]) -> TokenTable:
        return self.encoder.encode_table(list(sequences))

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        # A protein longer than the budget goes whole, alone in its batch.
        return batches_by_tokens(lengths, self.tokens_per_batch)

    @torch.inference_mode()
    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from virnucpro.models.esm2 import MAX_POOLED_RESIDUES

        ids, mask = ids.to(self.device), mask.to(self.device)
        with autocast(self.mode, self.device):
            hidden = self.forward(input_ids=ids, attention_mask=mask).last_hidden_state
        # Residues 1..min(len, 1024): no <cls> (position 0), no <eos>, no padding.
        residues = (mask.sum(dim=1) - 2).clamp(max=MAX_POOLED_RESIDUES)
        positions = torch.arange(mask.shape[1], device=mask.device)
        pooled = (positions[None, :] >= 1) & (positions[None, :] <= residues[:, None])
        return masked_mean(hidden, pooled)


Embedder = DnabertEmbedder | EsmEmbedder


def load_embedder(
    kind: str,
    folder: str | Path,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokens_per_batch: int | None = None,
    kernels: KernelChoice = KernelChoice(),
) -> Embedder:
    mode = precision_mode(precision)
    device = torch.device(device)
    if kind == "dnabert":
        return DnabertEmbedder(Path(folder), device, mode, batch_size, kernels)
    if kind == "esm":
        budget = tokens_per_batch or DEFAULT_TOKENS_PER_BATCH
        return EsmEmbedder(Path(folder), device, mode, budget, kernels)
    raise ValueError(f"unknown embedding kind {kind!r}")


def load_tokenizer(kind: str, folder: str | Path):
    """The tokenizer of a model folder alone (no weights): something with `encode_table`."""
    folder = Path(folder)
    if kind == "dnabert":
        from virnucpro.models.dnabert_s import TOKENIZER_FILE, DnabertTokenizer

        return DnabertTokenizer(folder / TOKENIZER_FILE)
    from virnucpro.models.esm2 import EsmEncoder

    return EsmEncoder(folder)


def check_model_folder(kind: str, folder: str | Path) -> None:
    """Raise `InputError` naming what is missing when `folder` is not a model of `kind`."""
    from virnucpro.models import dnabert_s, esm2

    if Path(folder).is_file():
        raise InputError(f"{folder}: a file, not a model folder (give the folder that holds config.json)")
    (dnabert_s if kind == "dnabert" else esm2).check_folder(Path(folder))


def release_cuda_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class HostStaging:
    """Pads batches with numpy and sends them to the device. On CUDA, into a few pinned buffers
    used in turn (a buffer is refilled only once its previous copy has finished), copied without
    blocking; ids and lengths travel together, the mask is built on the device."""

    SLOTS = 4

    def __init__(self, device: torch.device):
        self.device = device
        self.pinned = device.type == "cuda"
        self.buffers: list[torch.Tensor | None] = [None] * self.SLOTS
        self.copied: list[torch.cuda.Event | None] = [None] * self.SLOTS
        self.turn = 0

    def send(self, table: TokenTable, rows: Sequence[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(ids, mask)` of `rows` on the device."""
        if not self.pinned:
            ids, lengths = pad_rows(table, rows, pad_id)
            return torch.from_numpy(ids), length_mask(torch.from_numpy(lengths), ids.shape[1])
        slot, self.turn = self.turn, (self.turn + 1) % self.SLOTS
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()
        count, longest = len(rows), int(table.lengths[np.asarray(rows)].max())
        size = count * longest + count
        if self.buffers[slot] is None or self.buffers[slot].numel() < size:
            self.buffers[slot] = torch.empty(max(size, 1 << 16), dtype=torch.int64, pin_memory=True)
        host = self.buffers[slot].numpy()
        _, lengths = pad_rows(table, rows, pad_id, out=host)
        host[count * longest : size] = lengths
        staged = self.buffers[slot][:size].to(self.device, non_blocking=True)
        self.copied[slot] = torch.cuda.Event()
        self.copied[slot].record()
        ids = staged[: count * longest].view(count, longest)
        return ids, length_mask(staged[count * longest :], longest)


def embed_sequences(
    embedder: Embedder,
    sequences: Sequence[str],
    on_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Pooled float32 vectors [len(sequences), dim], row i for sequence i."""
    return embed_table(embedder, embedder.encode_table(sequences), on_batch, should_stop)


def embed_table(
    embedder: Embedder,
    table: TokenTable,
    on_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    staging: HostStaging | None = None,
) -> np.ndarray:
    """Pooled float32 vectors [len(table), dim], row i for sequence i of `table`.

    Batches are issued without waiting for the device; results come back in one copy at the end.
    A CUDA out-of-memory halves the batch and retries, down to one sequence; the smaller size stays
    for the rest of the call, and each reduction is logged.
    """
    staging = staging or HostStaging(embedder.device)
    done_rows: list[np.ndarray] = []
    done_vectors: list[torch.Tensor] = []
    max_rows: int | None = None
    for planned in embedder.batches(table.lengths.tolist()):
        pending = [planned]
        while pending:
            if should_stop is not None and should_stop():
                raise VirNucProError("stopped because another worker failed")
            batch = pending.pop(0)
            if max_rows is not None and len(batch) > max_rows:
                pending[:0] = split_batch(batch, max_rows)
                continue
            ids, mask = staging.send(table, batch, embedder.pad_id)
            try:
                vectors = embedder.pooled(ids, mask)
            except torch.cuda.OutOfMemoryError as err:
                del ids, mask
                release_cuda_memory()
                longest = int(table.lengths[np.asarray(batch)].max())
                if len(batch) == 1:
                    raise VirNucProError(
                        f"CUDA out of memory on a single sequence of {longest} tokens"
                    ) from err
                max_rows = len(batch) // 2
                log.warning(
                    "CUDA out of memory on a batch of %d sequences x %d tokens; retrying with batches of %d",
                    len(batch),
                    longest,
                    max_rows,
                )
                pending.insert(0, batch)
                continue
            done_rows.append(np.asarray(batch, dtype=np.int64))
            done_vectors.append(vectors)
            if on_batch is not None:
                on_batch(len(batch))
    out = np.empty((len(table), embedder.dim), dtype=np.float32)
    if done_vectors:
        out[np.concatenate(done_rows)] = torch.cat(done_vectors).cpu().numpy()
    return out
