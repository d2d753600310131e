"""Seeded random DNA and protein sequences of frame-like lengths, for the embedding tests."""

from __future__ import annotations

import random


def random_dna(count: int, seed: int, low: int = 60, high: int = 501) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACGT") for _ in range(rng.randint(low, high))) for _ in range(count)]


def random_proteins(count: int, seed: int, low: int = 5, high: int = 167) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(low, high)))
        for _ in range(count)
    ]
