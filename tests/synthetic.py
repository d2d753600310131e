"""Synthetic inputs for the predict, report and training tests: the bundled example prepared for
real, seeded random embedding files in the real format, and a random classifier sized to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from virnucpro.classifier import ClassifierConfig, MLPClassifier, save_classifier
from virnucpro.embedding_files import write_embeddings
from virnucpro.prepare import prepare
from virnucpro.shards import read_shard, shard_of

DNABERT_DIM = 24
ESM_DIM = 40


def prepared_example(example_fasta: Path, outdir: Path, shard_size: int = 7) -> Path:
    prepare(example_fasta, outdir, chunk_size=500, shard_size=shard_size, quiet=True)
    return outdir


def write_random_embeddings(
    prepared: Path, outdir: Path, seed: int = 0, dnabert_dim: int = DNABERT_DIM, esm_dim: int = ESM_DIM
) -> list[Path]:
    """Both embedding files of every shard; the ESM-2 rows are reversed so a join by position fails."""
    rng = np.random.default_rng(seed)
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for nucleotide in sorted((prepared / "shards").glob("shard_*.nucleotide.fa")):
        ids, _ = read_shard(nucleotide)
        shard = shard_of(nucleotide)
        dnabert = rng.normal(size=(len(ids), dnabert_dim)).astype(np.float32)
        esm = rng.normal(size=(len(ids), esm_dim)).astype(np.float32)
        write_embeddings(outdir / f"{shard}.dnabert.parquet", ids, dnabert, {"model": "random-dnabert"})
        write_embeddings(outdir / f"{shard}.esm.parquet", ids[::-1], esm[::-1], {"model": "random-esm"})
        files += [outdir / f"{shard}.dnabert.parquet", outdir / f"{shard}.esm.parquet"]
    return files


def random_classifier(
    folder: Path, seed: int = 0, dnabert_dim: int = DNABERT_DIM, esm_dim: int = ESM_DIM
) -> MLPClassifier:
    """A random MLP with a zero output bias, so some chunks come out viral and some not."""
    torch.manual_seed(seed)
    model = MLPClassifier(dnabert_dim + esm_dim, 32, 2)
    torch.nn.init.zeros_(model.output_layer.bias)
    model.bn1.running_mean.normal_(0.0, 0.1)
    model.bn1.running_var.uniform_(0.5, 2.0)
    model.eval()
    config = ClassifierConfig(
        dnabert_dim + esm_dim, 32, 2, dnabert_dim, esm_dim, source=f"random seed {seed}"
    )
    save_classifier(model, folder, config)
    return model
