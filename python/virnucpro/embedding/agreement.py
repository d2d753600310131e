"""How closely a fast precision mode agrees with fp32: the smallest cosine similarity between
matching embedding vectors, and the share of frames whose call (virus or others) through the
classifier stays the same. Used by the tests on CPU and by bench/gpu.py."""

from __future__ import annotations

import numpy as np
import torch


def min_cosine(reference: np.ndarray, other: np.ndarray) -> float:
    """Smallest row-wise cosine similarity of two [rows, dim] tables (float64 arithmetic)."""
    a, b = reference.astype(np.float64), other.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.sum(a * b, axis=1) / norms)) if len(a) else float("nan")


def virus_calls(classifier: torch.nn.Module, dnabert: np.ndarray, esm: np.ndarray) -> np.ndarray:
    """Per frame: True where P(virus) > P(others), the original's per-frame prediction."""
    from virnucpro.method.classifier import score_features

    others, virus = score_features(classifier, np.concatenate([dnabert, esm], axis=1))
    return virus > others


def label_agreement(
    classifier: torch.nn.Module,
    reference: tuple[np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray],
) -> float:
    """Share of frames called the same way from `other`'s (DNABERT-S, ESM-2) vectors as from
    `reference`'s."""
    same = virus_calls(classifier, *reference) == virus_calls(classifier, *other)
    return float(same.mean()) if len(same) else float("nan")
