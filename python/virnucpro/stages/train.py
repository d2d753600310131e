"""`virnucpro train`: fit the MLP classifier on labelled embeddings.

The original's settings (SGD, lr 2e-4, momentum 0.9, StepLR(10, 0.85), batch 32, cross-entropy,
Xavier-initialised linear layers, early stopping with patience 5), but with a real three-way split:
a seeded, per-class split of the input *sequences* into train, validation and test sets. Every
frame of every chunk of one sequence lands on the same side (the original split frame rows, so
frames of one chunk and overlapping chunks of one sequence were on both sides and inflated its test
metrics). Early stopping watches the validation loss only, and the reported metrics come from the
test set, which training never sees.

Inputs per class: FASTA/FASTQ files (prepared and embedded here with the given models) or
embedding files made earlier (`shard_NNNNN.dnabert.parquet` + `shard_NNNNN.esm.parquet`, or the
folders holding them). Any embedding widths work; the classifier's input is their sum.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from virnucpro.defaults import DEFAULT_SHARD_SIZE, TrainSettings
from virnucpro.embedding.options import EmbeddingOptions
from virnucpro.errors import InputError
from virnucpro.files.atomic import atomic_open
from virnucpro.files.embedding_files import read_embeddings
from virnucpro.files.layout import DNABERT_SUFFIX, EMBEDDINGS_DIR, ESM_SUFFIX, PREPARE_DIR
from virnucpro.files.outdir import make_writable_folder
from virnucpro.method.classifier import ClassifierConfig, MLPClassifier, save_classifier
from virnucpro.progress import progress_task
from virnucpro.stages.embed import embed_prepared
from virnucpro.stages.predict import join_features, pair_embedding_files
from virnucpro.stages.prepare import ensure_prepared

log = logging.getLogger("virnucpro")

METRICS_JSON = "metrics.json"
LABELS = {"others": 0, "virus": 1}
SPLIT_UNIT = "input sequence"  # what metrics.json says the split keeps together
_FRAME_ID = re.compile(r"^(?P<sequence>.+)_chunk_\d+[FR][123]$")


def sequence_of(frame_id: str) -> str:
    """The input sequence a frame id (`{seqid}_chunk_{k}F1`) belongs to; other ids stand alone."""
    match = _FRAME_ID.match(frame_id)
    return match.group("sequence") if match else frame_id


def _is_embedding_source(path: Path) -> bool:
    if path.is_dir():
        return True
    return path.name.endswith((DNABERT_SUFFIX, ESM_SUFFIX))


def _embedding_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob(f"shard_*{DNABERT_SUFFIX}")) + sorted(path.glob(f"shard_*{ESM_SUFFIX}"))
            if not found:
                raise InputError(
                    f"{path}: no shard_NNNNN{DNABERT_SUFFIX} / {ESM_SUFFIX} files in this folder"
                )
            files.extend(found)
        else:
            files.append(path)
    return files


def _embed_fasta(path: Path, workdir: Path, options: EmbeddingOptions, quiet: bool) -> list[Path]:
    """Prepare and embed one FASTA/FASTQ file as `virnucpro run` does; finished work is reused."""
    ensure_prepared([path], workdir / PREPARE_DIR, options.chunk_size, DEFAULT_SHARD_SIZE, quiet)
    dnabert, esm = embed_prepared(workdir / PREPARE_DIR, workdir / EMBEDDINGS_DIR, options, quiet)
    return [*dnabert, *esm]


def load_labelled_features(
    sources: dict[str, Sequence[Path]], workdir: Path, options: EmbeddingOptions, quiet: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Features [n, d] float32, labels [n] int64, the input sequence of each row (an int64 group
    number, the same for all frames of one sequence of one class), and the DNABERT-S and ESM-2
    widths."""
    features, labels, groups, widths = [], [], [], set()
    group_numbers: dict[tuple[str, str], int] = {}
    for label, paths in sources.items():
        embedding_paths = [p for p in map(Path, paths) if _is_embedding_source(p)]
        files = _embedding_files(embedding_paths)
        for number, fasta in enumerate((p for p in map(Path, paths) if not _is_embedding_source(p)), start=1):
            if not fasta.is_file():
                raise InputError(
                    f"{fasta}: no such file (give FASTA/FASTQ files or folders of embedding files)"
                )
            files += _embed_fasta(fasta, workdir / f"{label}_{number}", options, quiet)
        if not files:
            raise InputError(f"no {label} input given")
        for _, dnabert_path, esm_path in pair_embedding_files(files):
            dnabert, esm = read_embeddings(dnabert_path), read_embeddings(esm_path)
            widths.add((dnabert.dim, esm.dim))
            ids, joined = join_features(dnabert, esm, dnabert_path, esm_path)
            features.append(joined)
            labels.append(np.full(joined.shape[0], LABELS[label], dtype=np.int64))
            groups.append(
                np.fromiter(
                    (group_numbers.setdefault((label, sequence_of(i)), len(group_numbers)) for i in ids),
                    dtype=np.int64,
                    count=len(ids),
                )
            )
    if len(widths) != 1:
        raise InputError(
            f"the inputs' embeddings differ in width: {sorted(widths)}; embed all with the same models"
        )
    ((dnabert_dim, esm_dim),) = widths
    return np.concatenate(features), np.concatenate(labels), np.concatenate(groups), dnabert_dim, esm_dim


def split_indices(
    labels: np.ndarray, settings: TrainSettings, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded per-class split into train, validation and test row indices (each sorted). `groups`
    gives each row's input sequence: whole sequences are split, never their rows (without it,
    every row is a sequence of its own)."""
    if groups is None:
        groups = np.arange(len(labels))
    if not 0 < settings.validation_fraction < 1 or not 0 < settings.test_fraction < 1:
        raise InputError("--validation-fraction and --test-fraction must lie between 0 and 1")
    if settings.validation_fraction + settings.test_fraction >= 1:
        raise InputError("--validation-fraction + --test-fraction must leave rows to train on")
    rng = np.random.default_rng(settings.seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in (0, 1):
        rows = np.flatnonzero(labels == label)
        sequences = rng.permutation(np.unique(groups[rows]))
        n_test = max(1, round(len(sequences) * settings.test_fraction))
        n_validation = max(1, round(len(sequences) * settings.validation_fraction))
        if len(sequences) < n_test + n_validation + 2:
            name = next(k for k, v in LABELS.items() if v == label)
            raise InputError(
                f"only {len(sequences)} {name} input sequences: too few to split into train, validation "
                "and test (whole sequences are split, so that no sequence is on two sides)"
            )
        test = np.isin(groups[rows], sequences[:n_test])
        validation = np.isin(groups[rows], sequences[n_test : n_test + n_validation])
        parts[2].append(rows[test])
        parts[1].append(rows[validation])
        parts[0].append(rows[~test & ~validation])
    train, validation, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, validation, test


def binary_metrics(
    labels: np.ndarray, virus_probability: np.ndarray, predicted: np.ndarray
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (virus = positive) and AUROC (rank statistic, ties averaged)."""
    labels = labels.astype(bool)
    predicted = predicted.astype(bool)
    true_positive = int(np.sum(labels & predicted))
    precision = true_positive / int(predicted.sum()) if predicted.any() else 0.0
    recall = true_positive / int(labels.sum()) if labels.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    positives, negatives = int(labels.sum()), int((~labels).sum())
    auroc = None
    if positives and negatives:
        order = np.argsort(virus_probability, kind="mergesort")
        ranks = np.empty(len(order), dtype=np.float64)
        sorted_scores = virus_probability[order]
        start = 0
        while start < len(order):  # average ranks over tied scores
            end = start
            while end + 1 < len(order) and sorted_scores[end + 1] == sorted_scores[start]:
                end += 1
            ranks[order[start : end + 1]] = (start + end) / 2 + 1
            start = end + 1
        auroc = (ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    return {
        "accuracy": float(np.mean(labels == predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "auroc": None if auroc is None else float(auroc),
    }


@torch.no_grad()
def evaluate(model: MLPClassifier, features: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict]:
    model.eval()
    logits = model(features)
    loss = float(nn.functional.cross_entropy(logits, labels))
    probabilities = torch.softmax(logits, dim=1)
    predicted = probabilities.argmax(dim=1)
    return loss, binary_metrics(labels.numpy(), probabilities[:, 1].numpy(), predicted.numpy())


def fit(
    features: np.ndarray,
    labels: np.ndarray,
    settings: TrainSettings,
    quiet: bool = False,
    groups: np.ndarray | None = None,
) -> tuple[MLPClassifier, dict]:
    """Train on the train split, stop early on the validation loss, measure on the test split."""
    # One thread: batches of 32 rows gain nothing from more (they lose several-fold to thread
    # overhead), and the weights then do not depend on the machine's core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(features, labels, settings, quiet, groups)
    finally:
        torch.set_num_threads(threads)


def _fit(
    features: np.ndarray, labels: np.ndarray, settings: TrainSettings, quiet: bool, groups: np.ndarray | None
) -> tuple[MLPClassifier, dict]:
    if settings.max_epochs < 1 or settings.patience < 1 or settings.batch_size < 2 or settings.hidden_dim < 1:
        raise InputError(
            "--epochs, --patience and --hidden-dim must be at least 1, --train-batch-size at least 2"
        )
    if settings.learning_rate <= 0:
        raise InputError(f"--learning-rate must be positive, not {settings.learning_rate}")
    torch.manual_seed(settings.seed)
    if groups is None:
        groups = np.arange(len(labels))
    train_rows, validation_rows, test_rows = split_indices(labels, settings, groups)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    model = MLPClassifier(x.shape[1], settings.hidden_dim, 2)
    nn.init.xavier_uniform_(model.hidden_layer.weight)
    nn.init.xavier_uniform_(model.output_layer.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.lr_step, gamma=settings.lr_gamma
    )
    criterion = nn.CrossEntropyLoss()
    shuffler = torch.Generator().manual_seed(settings.seed)
    x_train, y_train = x[train_rows], y[train_rows]
    best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
    history = []
    with progress_task("train", total=settings.max_epochs, quiet=quiet, unit="epochs") as progress:
        for epoch in range(1, settings.max_epochs + 1):
            model.train()
            order = torch.randperm(len(train_rows), generator=shuffler)
            running, batches = 0.0, 0
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                if len(batch) < 2:  # BatchNorm cannot train on a single row
                    continue
                optimizer.zero_grad()
                loss = criterion(model(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
                running += loss.item()
                batches += 1
            validation_loss, validation_metrics = evaluate(model, x[validation_rows], y[validation_rows])
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": running / max(batches, 1),
                    "validation_loss": validation_loss,
                    "validation_accuracy": validation_metrics["accuracy"],
                }
            )
            progress.advance()
            if validation_loss < best_loss:
                best_loss, best_state, best_epoch, stale = (
                    validation_loss,
                    copy.deepcopy(model.state_dict()),
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= settings.patience:
                    break
            scheduler.step()
    model.load_state_dict(best_state)
    test_loss, test_metrics = evaluate(model, x[test_rows], y[test_rows])
    metrics = {
        "test": {**test_metrics, "loss": test_loss},
        "split": {
            "by": SPLIT_UNIT,  # all frames of one input sequence are on one side
            "train": len(train_rows),
            "validation": len(validation_rows),
            "test": len(test_rows),
            "train_sequences": len(np.unique(groups[train_rows])),
            "validation_sequences": len(np.unique(groups[validation_rows])),
            "test_sequences": len(np.unique(groups[test_rows])),
            "virus": int((labels == 1).sum()),
            "others": int((labels == 0).sum()),
        },
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "best_validation_loss": best_loss,
        "history": history,
        "settings": asdict(settings),
    }
    return model.eval(), metrics


def train(
    viral: Sequence[str | Path],
    others: Sequence[str | Path],
    outdir: str | Path,
    settings: TrainSettings = TrainSettings(),
    options: EmbeddingOptions = EmbeddingOptions(),
    quiet: bool = False,
) -> dict:
    """Train and write `outdir/model.safetensors`, `config.json` and `metrics.json`."""
    outdir = Path(outdir)
    make_writable_folder(outdir)
    sources = {"virus": [Path(p) for p in viral], "others": [Path(p) for p in others]}
    features, labels, groups, dnabert_dim, esm_dim = load_labelled_features(
        sources, outdir / "work", options, quiet
    )
    log.info(
        "train: %d virus and %d other rows of %d values",
        (labels == 1).sum(),
        (labels == 0).sum(),
        features.shape[1],
    )
    model, metrics = fit(features, labels, settings, quiet, groups)
    inputs = {label: [str(p) for p in paths] for label, paths in sources.items()}
    config = ClassifierConfig(
        input_dim=features.shape[1],
        hidden_dim=settings.hidden_dim,
        num_classes=2,
        dnabert_dim=dnabert_dim,
        esm_dim=esm_dim,
        source=f"virnucpro train: virus {inputs['virus']}, others {inputs['others']}",
        # known when this command chunked every input itself; embeddings made earlier do not say
        chunk_size=None
        if any(_is_embedding_source(p) for paths in sources.values() for p in paths)
        else options.chunk_size,
    )
    save_classifier(model, outdir, config)
    metrics["inputs"] = inputs
    with atomic_open(outdir / METRICS_JSON, "w", encoding="utf-8", newline="\n") as out:
        json.dump(metrics, out, indent=2, sort_keys=True)
        out.write("\n")
    test = metrics["test"]
    log.info(
        "train: best epoch %d of %d; test accuracy %.4f, precision %.4f, recall %.4f, F1 %.4f, AUROC %s",
        metrics["best_epoch"],
        metrics["epochs_run"],
        test["accuracy"],
        test["precision"],
        test["recall"],
        test["f1"],
        "n/a" if test["auroc"] is None else f"{test['auroc']:.4f}",
    )
    return metrics
