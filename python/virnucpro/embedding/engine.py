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
from virnucpro.errors import InputError, VirNucProError
from virnucpro.models.batching import (
    TokenTable,
    batches_by_count,
    batches_by_tokens,
    length_mask,
    masked_mean,
    pad_rows,
    split_batch,
)
from virnucpro.models.precision import PrecisionMode, autocast, precision_mode
from virnucpro.progress import log

KINDS = ("dnabert", "esm")
POOLING = {
    "dnabert": "mean over all tokens incl. [CLS] and [SEP]",
    "esm": "mean over residue positions 1..min(len,1024)",
}


# Inductor's compiled FlexAttention refuses smaller heads on CUDA ("NYI: embedding dimension ... must
# be at least 16"); the rule is applied on every device so a CPU run chooses as a GPU run would.
MIN_FLEX_HEAD_DIM = 16


@dataclass(frozen=True)
class KernelChoice:
    """Which kernels each model runs. Every choice gives the same values within float32 rounding
    (each is agreement-tested on CPU); the defaults are the measured or reference paths."""

    dnabert_attention: str | None = None  # "sdpa" or "flex"; None: compiled flex where it runs, else sdpa
    compile_dnabert: bool | None = None  # compile the flex kernel; None: on CUDA
    esm_attention: str = "sdpa"  # "sdpa", "flex_attention" or "eager"
    esm_fused_qkv: bool = False  # one projection for query, key and value (sdpa only)
    compile_esm: bool = False  # regional compilation of ESM-2's layers
    compile_fp8_quantize: bool = False  # fp8: activation quantization as one compiled kernel


def can_compile_kernels(device_type: str = "cuda") -> bool:
    """Whether torch.compile can build kernels for `device_type` here: on GPUs, Triton and the C
    compiler it needs for its launchers (CUDA runtime containers often have none); on the CPU, the
    C++ compiler inductor calls."""
    import importlib.util
    import os
    import shutil

    if device_type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return False
        compilers = (os.environ.get("CC", ""), "cc", "gcc", "clang")
    else:
        compilers = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
    return any(shutil.which(c) for c in compilers if c)


@dataclass(frozen=True)
class AttentionChoice:
    attention: str  # "sdpa" or "flex"
    compiled: bool
    fallback_reason: str | None = None  # why compiled flex was wanted but not taken


def choose_dnabert_attention(head_dim: int, device: torch.device, kernels: KernelChoice) -> AttentionChoice:
    """DNABERT-S's attention path. By default compiled FlexAttention on CUDA (ALiBi inside the fused
    kernel) and the dense-bias SDPA reference on the CPU. Where compiled flex is wanted but cannot run
    (heads under `MIN_FLEX_HEAD_DIM` wide, no compiler), SDPA, with the reason; a compilation that
    fails later falls back the same way (`DnabertEmbedder`)."""
    if kernels.dnabert_attention not in (None, "sdpa", "flex"):
        raise ValueError(f"DNABERT-S attention {kernels.dnabert_attention!r}: use sdpa or flex")
    if kernels.dnabert_attention == "sdpa" or (kernels.dnabert_attention is None and device.type != "cuda"):
        return AttentionChoice("sdpa", False)
    compiled = kernels.compile_dnabert if kernels.compile_dnabert is not None else device.type == "cuda"
    if not compiled:
        return AttentionChoice("flex", False)
    if head_dim < MIN_FLEX_HEAD_DIM:
        reason = (
            f"head dimension {head_dim} is under {MIN_FLEX_HEAD_DIM}, the least compiled FlexAttention takes"
        )
        return AttentionChoice("sdpa", False, reason)
    if not can_compile_kernels(device.type):
        needs = "Triton and a C compiler" if device.type == "cuda" else "a C++ compiler"
        return AttentionChoice("sdpa", False, f"torch.compile needs {needs}, and this machine has none")
    return AttentionChoice("flex", True)


ATTENTION_DESCRIPTIONS = {
    ("sdpa", False): "sdpa (dense float32 ALiBi bias)",
    ("flex", False): "flex_attention (eager, ALiBi in score_mod)",
    ("flex", True): "flex_attention (compiled, ALiBi in score_mod)",
}


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


class DnabertEmbedder:
    """DNABERT-S: `[CLS] tokens [SEP]`, last hidden state, mean over every real token."""

    kind = "dnabert"

    def __init__(self, model, tokenizer, device: torch.device, mode: PrecisionMode, batch_size: int, kernels):
        self.model, self.tokenizer = model, tokenizer
        self.device, self.mode, self.batch_size = device, mode, batch_size
        self.pad_id = self.tokenizer.pad_id
        self.dim = self.model.config.hidden_size
        choice = choose_dnabert_attention(self.model.head_dim, device, kernels)
        self.model.use_attention(choice.attention, choice.compiled)
        if choice.fallback_reason:
            self.fall_back(choice.fallback_reason)
        elif choice.compiled:
            self.probe_compilation()

    @property
    def attention_kernel(self) -> str:
        return ATTENTION_DESCRIPTIONS[self.model.attention, self.model.compile_flex]

    def fall_back(self, reason: str) -> None:
        self.model.use_attention("sdpa")
        log.warning(
            "DNABERT-S attention: SDPA with a dense bias instead of compiled FlexAttention: %s", reason
        )

    def probe_compilation(self) -> None:
        """Compile now, on a small batch of two lengths, so a compiler that fails is met before any
        shard is read, and the run goes on with SDPA."""
        lengths = torch.tensor([24, 17], device=self.device)
        mask = (torch.arange(24, device=self.device)[None, :] < lengths[:, None]).long()
        ids = torch.where(mask.bool(), 5, self.pad_id)
        try:
            self.forward(ids, mask)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as err:  # inductor and Triton raise many types; any of them means no kernel
            self.fall_back(f"compilation failed ({first_line(err)})")

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.mode, self.device):
            return self.model(ids, mask)

    def encode_table(self, sequences: Sequence[str]) -> TokenTable:
        return self.tokenizer.encode_table(list(sequences))

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        return batches_by_count(lengths, self.batch_size)

    @torch.inference_mode()
    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.device), mask.to(self.device)
        try:
            hidden = self.forward(ids, mask)
        except torch._dynamo.exc.TorchDynamoException as err:  # a recompilation for a new shape failed
            if not self.model.compile_flex:
                raise
            self.fall_back(f"compilation failed ({first_line(err)})")
            hidden = self.forward(ids, mask)
        return masked_mean(hidden, mask)


class EsmEmbedder:
    """ESM-2: `<cls> residues <eos>` (the whole protein), `last_hidden_state`, mean over residue
    positions 1..min(len, 1024)."""

    kind = "esm"

    def __init__(
        self,
        model,
        encoder,
        device: torch.device,
        mode: PrecisionMode,
        tokens_per_batch: int,
        kernels,
        source: str,
    ):
        """`model` (an `EsmModel` in `mode`'s dtypes on `device`) is changed in place where `kernels`
        ask for fused QKV, fp8 layers or compiled layers; `source` names it in errors."""
        from virnucpro.models.esm2 import attention_implementation, compile_layers, fuse_qkv

        self.model, self.encoder = model, encoder
        model.config._attn_implementation = attention_implementation(kernels.esm_attention)
        if kernels.esm_fused_qkv:
            fuse_qkv(self.model)
        if mode.fp8_linear:
            from virnucpro.embedding.fp8 import convert_linears

            try:
                convert_linears(self.model.encoder, compiled_quantize=kernels.compile_fp8_quantize)
            except ValueError as err:
                raise InputError(f"{source}: --precision fp8: {err}") from None
        if kernels.compile_esm:
            compile_layers(self.model)
        self.device, self.mode, self.tokens_per_batch = device, mode, tokens_per_batch
        self.pad_id = self.encoder.pad_id
        self.dim = self.model.config.hidden_size
        self.attention_kernel = describe_esm_kernels(self.model.config._attn_implementation, mode, kernels)

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
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        # Residues 1..min(len, 1024): no <cls> (position 0), no <eos>, no padding.
        residues = (mask.sum(dim=1) - 2).clamp(max=MAX_POOLED_RESIDUES)
        positions = torch.arange(mask.shape[1], device=mask.device)
        pooled = (positions[None, :] >= 1) & (positions[None, :] <= residues[:, None])
        return masked_mean(hidden, pooled)


Embedder = DnabertEmbedder | EsmEmbedder


def describe_esm_kernels(attention: str, mode: PrecisionMode, kernels: KernelChoice) -> str:
    """ESM-2's kernels in words, as recorded in the embedding files' metadata."""
    extras = ["fused QKV"] if kernels.esm_fused_qkv else []
    if mode.fp8_linear:
        extras.append("fp8 compiled quantize" if kernels.compile_fp8_quantize else "fp8 eager quantize")
    if kernels.compile_esm:
        extras.append("compiled layers")
    return attention + (f" ({', '.join(extras)})" if extras else "")


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
        from virnucpro.models.dnabert_s import load_dnabert

        model, tokenizer = load_dnabert(folder, device, mode)
        return DnabertEmbedder(model, tokenizer, device, mode, batch_size, kernels)
    if kind == "esm":
        from virnucpro.models.esm2 import load_esm

        model, encoder = load_esm(folder, device, mode, kernels.esm_attention)
        budget = tokens_per_batch or DEFAULT_TOKENS_PER_BATCH
        return EsmEmbedder(model, encoder, device, mode, budget, kernels, source=str(folder))
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
