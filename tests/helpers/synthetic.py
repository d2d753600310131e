"""Synthetic inputs for the predict, report and training tests: the bundled example prepared for
real, seeded random embedding files in the real format, a random classifier sized to them, and
scripted samples whose chunk scores are chosen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from virnucpro.files.embedding_files import write_embeddings
from virnucpro.files.score_files import write_scores
from virnucpro.files.shards import read_shard, shard_of
from virnucpro.method.classifier import ClassifierConfig, MLPClassifier, save_classifier
from virnucpro.method.frames import chunk_bounds
from virnucpro.stages.prepare import prepare

DNABERT_DIM = 24
ESM_DIM = 40
# What predict records of its classifier in a score file, for scripted scores: a calibration is
# checked against the chunk size and the classifier's identity.
SCRIPTED_CLASSIFIER = {
    "classifier": "scripted",
    "classifier_sha256": "5c" * 32,
    "classifier_chunk_size": "500",
}


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


def scripted_sample(
    folder: Path,
    chunk_scores: dict[str, list[float | None]],
    lengths: dict[str, int] | None = None,
    shard_size: int = 7,
) -> tuple[Path, Path, list[Path]]:
    """A sample whose chunks score as scripted: per sequence, per chunk, the P(virus) of every frame
    of the chunk (P(others) = 1 - it), or None for a chunk without a stop-free frame.

    The sequence (default length 500 * chunks - 37, so that neighbouring chunks overlap) is `A`,
    whose six frames are stop-free, and `N` over every chunk scripted None, so that it keeps no
    frame. It goes through the real prepare; the score files cover every kept frame.
    Returns the FASTA, the prepare folder and the score files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fasta = folder / "input.fa"
    records = []
    for seq_id, scores in chunk_scores.items():
        length = (lengths or {}).get(seq_id, 500 * len(scores) - 37)
        bases = bytearray(b"A" * length)
        bounds = chunk_bounds(length, 500)
        assert len(bounds) == len(scores), f"{seq_id}: {len(bounds)} chunks, {len(scores)} scripted"
        for (start, end), score in zip(bounds, scores, strict=True):
            if score is None:
                bases[start:end] = b"N" * (end - start)
        records.append(f">{seq_id}\n{bases.decode()}\n")
    fasta.write_text("".join(records))
    prepared = prepared_example(fasta, folder / "prepared", shard_size)
    virus_of_chunk = {
        f"{seq_id}_chunk_{k}": score
        for seq_id, scores in chunk_scores.items()
        for k, score in enumerate(scores, start=1)
    }
    score_files = []
    (folder / "scores").mkdir(exist_ok=True)
    for nucleotide in sorted((prepared / "shards").glob("shard_*.nucleotide.fa")):
        ids, _ = read_shard(nucleotide)
        virus = np.array([virus_of_chunk[frame_id[:-2]] for frame_id in ids], dtype=np.float32)
        path = folder / "scores" / f"{shard_of(nucleotide)}.scores.parquet"
        write_scores(path, ids, (1.0 - virus).astype(np.float32), virus, SCRIPTED_CLASSIFIER)
        score_files.append(path)
    return fasta, prepared, score_files


def write_calibration_json(folder: Path, chunk_size: int = 500, classifier_sha256: str = "ab" * 32) -> Path:
    """A calibration.json of `virnucpro calibrate` (written by its own code) for a labelled set of
    300 sequences whose chunk margins are drawn apart by class: thresholds meet an FDR of 0.05."""
    from virnucpro.method.calibration import LabelledChunks, calibrate
    from virnucpro.stages.calibrate import write_calibration

    rng = np.random.default_rng(5)
    truth = np.repeat([True, False], 150)
    sequence = np.repeat(np.arange(300), 10)
    margin = np.where(truth[sequence], rng.beta(6, 2, 3000), rng.beta(2, 6, 3000)) * 2 - 1
    chunks = LabelledChunks(sequence, margin.astype(np.float32), ((margin + 1) / 2).astype(np.float32), truth)
    made = {"chunk_size": chunk_size, "classifier": "c", "classifier_sha256": classifier_sha256}
    provenance = {**made, "sources": [{"file": "chunks.tsv", **made}]}
    write_calibration(chunks, calibrate(chunks, 0.05, provenance), folder)
    return folder / "calibration.json"
