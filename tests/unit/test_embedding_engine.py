"""Invariant 1: batched embeddings equal the original one-at-a-time loop, for both models; and the
CUDA out-of-memory back-off."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from virnucpro.embedding.engine import KernelChoice, embed_sequences, load_embedder
from virnucpro.errors import VirNucProError
from virnucpro.models.esm2 import MAX_POOLED_RESIDUES
from virnucpro.progress import log

BATCHED = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(autouse=True)
def one_thread():
    """As a pool worker runs; also keeps these tests quick on a busy machine (OpenMP waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_dna(rng: random.Random, count: int) -> list[str]:
    # Shuffled lengths (chunk-like, 50..501 bp) so batches mix lengths and need padding.
    return ["".join(rng.choice("ACGT") for _ in range(rng.randint(50, 501))) for _ in range(count)]


def random_proteins(rng: random.Random, count: int) -> list[str]:
    return [
        "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(5, 167))) for _ in range(count)
    ]


def original_dnabert_loop(embedder, sequences) -> np.ndarray:
    """VirNucPro's loop: tokenizer(seq) alone, model(ids) without a mask, mean over all tokens."""
    rows = []
    with torch.no_grad():
        for sequence in sequences:
            ids = torch.tensor([embedder.tokenizer.encode([sequence])[0]])
            rows.append(embedder.model(ids)[0].mean(dim=0).numpy())
    return np.stack(rows)


def original_esm_loop(embedder, proteins) -> np.ndarray:
    """fair-esm extract, one protein per batch: residues 1..min(len, 1024) of the final layer."""
    rows = []
    with torch.no_grad():
        for protein in proteins:
            ids = torch.tensor(embedder.encoder.encode([protein]))
            hidden = embedder.model(input_ids=ids).last_hidden_state[0]
            rows.append(hidden[1 : min(len(protein), MAX_POOLED_RESIDUES) + 1].mean(dim=0).numpy())
    return np.stack(rows)


@pytest.mark.slow
def test_dnabert_batched_equals_one_at_a_time(test_models):
    sequences = random_dna(random.Random(1), 300)
    embedder = load_embedder("dnabert", test_models / "dnabert-s", batch_size=256)
    batched = embed_sequences(embedder, sequences)
    assert batched.shape == (300, embedder.dim) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, original_dnabert_loop(embedder, sequences), **BATCHED)


@pytest.mark.slow
def test_esm_batched_equals_one_at_a_time(test_models):
    proteins = random_proteins(random.Random(2), 300)
    embedder = load_embedder("esm", test_models / "esm2", tokens_per_batch=256 * 169)
    assert len(embedder.batches(embedder.encode_table(proteins).lengths.tolist())) == 2
    batched = embed_sequences(embedder, proteins)
    np.testing.assert_allclose(batched, original_esm_loop(embedder, proteins), **BATCHED)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "kernels"),
    [
        ("dnabert", KernelChoice(dnabert_attention="flex")),
        ("esm", KernelChoice(esm_attention="eager")),
    ],
)
def test_every_cpu_attention_path_keeps_batched_equal_to_one_at_a_time(test_models, kind, kernels):
    """Invariant 1 for the other attention paths that run on CPU (FlexAttention unfused, eager):
    their batched vectors equal the original loop (run on the reference path). ESM-2's
    flex_attention, which compiles its block mask on CPU, is compared with sdpa in test_esm2.py."""
    folder = test_models / ("dnabert-s" if kind == "dnabert" else "esm2")
    reference = load_embedder(kind, folder)
    if kind == "dnabert":
        data = random_dna(random.Random(7), 24)
        embedder = load_embedder(kind, folder, batch_size=12, kernels=kernels)
        expected = original_dnabert_loop(reference, data)
    else:
        data = random_proteins(random.Random(7), 24)
        embedder = load_embedder(kind, folder, tokens_per_batch=2000, kernels=kernels)
        expected = original_esm_loop(reference, data)
    np.testing.assert_allclose(embed_sequences(embedder, data), expected, **BATCHED)


def test_results_do_not_depend_on_batch_size(test_models):
    sequences = random_dna(random.Random(3), 40)
    one = embed_sequences(load_embedder("dnabert", test_models / "dnabert-s", batch_size=40), sequences)
    other = embed_sequences(load_embedder("dnabert", test_models / "dnabert-s", batch_size=7), sequences)
    np.testing.assert_allclose(one, other, **BATCHED)


class OutOfMemoryAbove:
    """The real embedder, except that batches over `rows` raise CUDA's out-of-memory error."""

    def __init__(self, embedder, rows: int):
        self.embedder, self.rows, self.calls = embedder, rows, []

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def pooled(self, ids, mask):
        self.calls.append(len(ids))
        if len(ids) > self.rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return self.embedder.pooled(ids, mask)


@pytest.fixture
def warnings_seen():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    log.addHandler(handler)
    yield records
    log.removeHandler(handler)


def test_out_of_memory_halves_the_batch(test_models, warnings_seen):
    sequences = random_dna(random.Random(4), 20)
    embedder = load_embedder("dnabert", test_models / "dnabert-s", batch_size=16)
    expected = embed_sequences(embedder, sequences)
    flaky = OutOfMemoryAbove(embedder, rows=3)
    got = embed_sequences(flaky, sequences)
    np.testing.assert_allclose(got, expected, **BATCHED)
    # 16 fails, 8 fails, 4 fails, then 2s; the later batch of 4 starts at the reduced size.
    assert flaky.calls[:3] == [16, 8, 4] and max(flaky.calls[3:]) == 2
    assert len(warnings_seen) == 3
    assert "retrying with batches of 2" in warnings_seen[-1].getMessage()


def test_out_of_memory_on_one_sequence_fails(test_models, warnings_seen):
    embedder = load_embedder("dnabert", test_models / "dnabert-s", batch_size=4)
    with pytest.raises(VirNucProError, match="out of memory on a single sequence"):
        embed_sequences(OutOfMemoryAbove(embedder, rows=0), random_dna(random.Random(5), 4))


def test_no_sequences_give_an_empty_table(test_models):
    embedder = load_embedder("esm", test_models / "esm2")
    assert embed_sequences(embedder, []).shape == (0, embedder.dim)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kind", ["dnabert", "esm"])
def test_gpu_fp32_matches_cpu(test_models, kind):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    folder = test_models / ("dnabert-s" if kind == "dnabert" else "esm2")
    data = random_dna(random.Random(6), 64) if kind == "dnabert" else random_proteins(random.Random(6), 64)
    cpu = embed_sequences(load_embedder(kind, folder), data)
    gpu = embed_sequences(load_embedder(kind, folder, device="cuda"), data)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
