"""`virnucpro train`: a seeded train/validation/test split, early stopping on validation, metrics on
the untouched test split, a classifier that reloads and scores like it was measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from virnucpro.errors import InputError
from virnucpro.files.embedding_files import write_embeddings
from virnucpro.models.classifier_weights import load_classifier
from virnucpro.stages.train import TrainSettings, binary_metrics, split_indices

DNABERT_DIM, ESM_DIM = 8, 12


def labelled_set(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clouds 4.5 standard deviations apart: learnable, not trivially separable."""
    dnabert = rng.normal(size=(n, DNABERT_DIM)) + shift
    esm = rng.normal(size=(n, ESM_DIM)) - shift
    return dnabert.astype(np.float32), esm.astype(np.float32)


def write_class(
    folder: Path, label: str, rng: np.random.Generator, shift: float, shards: int = 2, n: int = 200
):
    folder.mkdir(parents=True)
    for shard in range(1, shards + 1):
        dnabert, esm = labelled_set(rng, n, shift)
        ids = [f"{label}{shard}_{i}_chunk_1F1" for i in range(n)]
        write_embeddings(folder / f"shard_{shard:05d}.dnabert.parquet", ids, dnabert, {"model": "synthetic"})
        # ESM-2 rows in another order: training joins by id like prediction does.
        write_embeddings(
            folder / f"shard_{shard:05d}.esm.parquet", ids[::-1], esm[::-1], {"model": "synthetic"}
        )


@pytest.mark.slow
def test_training_learns_a_synthetic_set_and_reloads(tmp_path):
    rng = np.random.default_rng(7)
    write_class(tmp_path / "viral", "v", rng, shift=1.0)
    write_class(tmp_path / "others", "o", rng, shift=0.0)
    outdir = tmp_path / "model"
    result = run_cli(
        "train", "--viral", tmp_path / "viral", "--others", tmp_path / "others", "--outdir", outdir,
        "--hidden-dim", "64", "--epochs", "60", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((outdir / "config.json").read_text())["chunk_size"] is None  # from embeddings
    metrics = json.loads((outdir / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) >= {"accuracy", "precision", "recall", "f1", "auroc"}
    assert test["accuracy"] > 0.9 and test["auroc"] > 0.95 and test["f1"] > 0.9
    assert metrics["split"] == {
        "by": "input sequence",
        "train": 640,
        "validation": 80,
        "test": 80,
        "train_sequences": 640,
        "validation_sequences": 80,
        "test_sequences": 80,
        "virus": 400,
        "others": 400,
    }
    # Early stopping watched the validation loss: training ran at most `patience` epochs past its best.
    assert metrics["epochs_run"] - metrics["best_epoch"] <= 5
    assert metrics["settings"]["learning_rate"] == 2e-4 and metrics["settings"]["batch_size"] == 32
    assert metrics["settings"]["lr_step"] == 10 and metrics["settings"]["lr_gamma"] == 0.85
    best = min(metrics["history"], key=lambda h: h["validation_loss"])
    assert best["epoch"] == metrics["best_epoch"]

    loaded = load_classifier(outdir)
    assert (loaded.config.input_dim, loaded.config.dnabert_dim, loaded.config.esm_dim) == (20, 8, 12)
    # Fresh rows from the same distributions: the reloaded model classifies them as measured.
    fresh_virus, fresh_others = labelled_set(rng, 300, 1.0), labelled_set(rng, 300, 0.0)
    features = np.concatenate([np.hstack(fresh_virus), np.hstack(fresh_others)])
    labels = np.array([1] * 300 + [0] * 300)
    with torch.no_grad():
        predicted = loaded.model(torch.from_numpy(features)).argmax(dim=1).numpy()
    assert np.mean(predicted == labels) > 0.9

    # Same inputs and seed: the same classifier, byte for byte.
    again = run_cli(
        "train", "--viral", tmp_path / "viral", "--others", tmp_path / "others",
        "--outdir", tmp_path / "again", "--hidden-dim", "64", "--epochs", "60", "--quiet",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (
        outdir / "model.safetensors"
    ).read_bytes()


def test_split_is_seeded_stratified_and_disjoint():
    labels = np.array([1] * 100 + [0] * 300)
    settings = TrainSettings(seed=3)
    train, validation, test = split_indices(labels, settings)
    assert len(set(train) | set(validation) | set(test)) == 400
    assert (
        not (set(train) & set(validation))
        and not (set(train) & set(test))
        and not (set(validation) & set(test))
    )
    assert labels[test].sum() == 10 and len(test) == 40 and labels[validation].sum() == 10
    again = split_indices(labels, settings)
    assert all(np.array_equal(a, b) for a, b in zip((train, validation, test), again, strict=True))
    other = split_indices(labels, TrainSettings(seed=4))
    assert not np.array_equal(test, other[2])
    with pytest.raises(InputError, match="too few"):
        split_indices(np.array([1, 1, 1, 0, 0, 0, 0, 0]), settings)


def test_binary_metrics_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0])
    probability = np.array([0.9, 0.6, 0.4, 0.6, 0.2, 0.1], dtype=np.float32)
    predicted = probability > 0.5
    metrics = binary_metrics(labels, probability, predicted)
    # TP 2, FP 1, FN 1, TN 2. AUROC: of 9 positive/negative pairs, 7 ordered right, 1 tie (0.6, 0.6).
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["auroc"] == pytest.approx(7.5 / 9)
    assert binary_metrics(np.array([1, 1]), np.array([0.2, 0.3]), np.array([0, 0]))["auroc"] is None


def test_inputs_of_different_widths_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    write_class(tmp_path / "viral", "v", rng, 1.0, shards=1, n=20)
    (tmp_path / "others").mkdir()
    ids = [f"o_{i}_chunk_1F1" for i in range(20)]
    write_embeddings(tmp_path / "others" / "shard_00001.dnabert.parquet", ids, rng.normal(size=(20, 9)), {})
    write_embeddings(tmp_path / "others" / "shard_00001.esm.parquet", ids, rng.normal(size=(20, 12)), {})
    result = run_cli(
        "train", "--viral", tmp_path / "viral", "--others", tmp_path / "others", "--outdir", tmp_path / "m"
    )
    assert result.returncode == 2
    assert "differ in width" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_training_from_fasta_embeds_with_the_given_models(test_models, example_fasta, tmp_path):
    """FASTA inputs go through prepare and both embeddings (the test models) before training."""
    others = tmp_path / "others.fa"
    # The same sequences under other ids: the plumbing is under test here, not the learning.
    others.write_text(example_fasta.read_text().replace(">", ">other_"))
    outdir = tmp_path / "model"
    result = run_cli(
        "train", "--viral", example_fasta, "--others", others, "--outdir", outdir,
        "--dnabert-model", test_models / "dnabert-s", "--esm-model", test_models / "esm2",
        "--devices", "cpu", "--epochs", "3", "--hidden-dim", "16", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((outdir / "config.json").read_text())
    models = json.loads((test_models / "classifier" / "config.json").read_text())
    assert (config["dnabert_dim"], config["esm_dim"]) == (models["dnabert_dim"], models["esm_dim"])
    assert config["chunk_size"] == 500  # chunked here: the length it was trained on is known
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert metrics["split"]["virus"] == metrics["split"]["others"] == 30
    assert metrics["epochs_run"] <= 3 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert sorted(p.name for p in (outdir / "work").iterdir()) == ["others_1", "virus_1"]
    assert load_classifier(outdir).config.input_dim == config["input_dim"]


def test_split_keeps_every_frame_of_a_sequence_on_one_side():
    """Frames of one chunk and overlapping chunks of one sequence never land on two sides."""
    from virnucpro.stages.train import sequence_of

    ids = [
        f"{label}{s}_chunk_{c}{frame}"
        for label in "vo"
        for s in range(40)
        for c in (1, 2, 3)
        for frame in ("F1", "R2")
    ]
    labels = np.array([1 if i.startswith("v") else 0 for i in ids])
    names = sorted({sequence_of(i) for i in ids})
    groups = np.array([names.index(sequence_of(i)) for i in ids])
    assert len(names) == 80 and sequence_of("a_b_chunk_12R3") == "a_b" and sequence_of("plain") == "plain"
    parts = split_indices(labels, TrainSettings(seed=1), groups)
    sides = [set(groups[rows]) for rows in parts]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sum(len(rows) for rows in parts) == len(ids)
    assert [len(side) for side in sides] == [64, 8, 8]  # 40 sequences per class: 32/4/4


def test_metrics_say_the_split_is_by_input_sequence(tmp_path):
    rng = np.random.default_rng(3)
    for label, shift in (("viral", 1.0), ("others", 0.0)):
        (tmp_path / label).mkdir()
        ids = [f"{label}{s}_chunk_{c}F1" for s in range(30) for c in (1, 2)]
        dnabert, esm = labelled_set(rng, len(ids), shift)
        write_embeddings(tmp_path / label / "shard_00001.dnabert.parquet", ids, dnabert, {"model": "m"})
        write_embeddings(tmp_path / label / "shard_00001.esm.parquet", ids, esm, {"model": "m"})
    result = run_cli(
        "train", "--viral", tmp_path / "viral", "--others", tmp_path / "others", "--outdir", tmp_path / "m",
        "--hidden-dim", "8", "--epochs", "2", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    split = json.loads((tmp_path / "m" / "metrics.json").read_text())["split"]
    assert split["by"] == "input sequence"
    assert (split["train_sequences"], split["validation_sequences"], split["test_sequences"]) == (48, 6, 6)
    assert (split["train"], split["validation"], split["test"]) == (96, 12, 12)
