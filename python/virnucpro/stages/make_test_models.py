"""`virnucpro make-test-models`: small random DNABERT-S, ESM-2 and classifier models (`models.tiny`),
the classifier's statistics measured on synthetic frames that the two models embed here."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from virnucpro.embedding.engine import embed_sequences, load_embedder
from virnucpro.method.frames import translate_chunks
from virnucpro.models.tiny import SEED, make_classifier, make_dnabert, make_esm, open_reading_frames


def calibration_features(folder: Path) -> torch.Tensor:
    """Concatenated DNABERT-S + ESM-2 means of the stop-free frames of fixed synthetic DNA."""
    dna = open_reading_frames(random.Random(SEED + 3), 24, 300, 1500)
    frames = [frame for chunk in translate_chunks(dna, 500) for frame in chunk.frames]
    nucleotides = [f.nucleotides.decode() for f in frames]
    proteins = [f.protein.decode() for f in frames]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the statistics must not depend on this machine's core count
    try:
        dna_vectors = embed_sequences(load_embedder("dnabert", folder / "dnabert-s"), nucleotides)
        protein_vectors = embed_sequences(load_embedder("esm", folder / "esm2"), proteins)
    finally:
        torch.set_num_threads(threads)
    return torch.from_numpy(np.concatenate([dna_vectors, protein_vectors], axis=1))


def make_test_models(folder: str | Path) -> Path:
    """Write `dnabert-s/`, `esm2/` and `classifier/` under `folder`; returns `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    make_dnabert(folder / "dnabert-s")
    make_esm(folder / "esm2")
    make_classifier(folder, calibration_features(folder))
    return folder
