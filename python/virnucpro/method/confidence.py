"""How sure each call is: confidence tiers of chunks, and of sequences and regions from their chunks.

- A chunk's tier comes from the winning class's best score over its frames (P(virus) for a chunk
  called virus, P(others) otherwise): `high` when it is at least `high` (default 0.9), `medium`
  when at least `medium` (0.7), `low` otherwise; unscored chunks have none.
- A sequence or region has the share of its scored chunks in each tier, and a tier of its own for
  its call (a region's call is virus): `high` when at least half of its scored chunks are
  high-confidence chunks of that call and none is a high-confidence chunk of the other class;
  `medium` when at least half are high- or medium-confidence chunks of that call; `low` otherwise.
"""

from __future__ import annotations

import numpy as np

from virnucpro.errors import InputError

TIERS = ("", "low", "medium", "high")  # stored as their number; 0: no tier (unscored)
NO_TIER, LOW, MEDIUM, HIGH = range(4)


def check_thresholds(high: float, medium: float) -> None:
    if not 0.0 <= medium <= high <= 1.0:
        raise InputError(
            f"--confidence-medium ({medium}) and --confidence-high ({high}) must satisfy "
            "0 <= medium <= high <= 1"
        )


def chunk_tiers(
    scored: np.ndarray,
    viral: np.ndarray,
    max_virus: np.ndarray,
    max_others: np.ndarray,
    high: float,
    medium: float,
) -> np.ndarray:
    """Each chunk's tier (uint8, a position in TIERS) from its called class's best score (float32,
    compared with the thresholds rounded to float32: a score written as 0.9 is >= 0.9)."""
    winning = np.where(viral, max_virus, max_others)
    tiers = np.full(len(winning), LOW, dtype=np.uint8)  # filled in place: no int64 temporaries
    tiers[winning >= np.float32(medium)] = MEDIUM
    tiers[winning >= np.float32(high)] = HIGH
    tiers[~scored] = NO_TIER
    return tiers


def summarise_tiers(
    groups: np.ndarray, tiers: np.ndarray, agrees: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per group (sequence or region) of scored chunks: how many are low, medium and high (an int32
    array (n_groups, 3)), and the group's tier by the rule of the module docstring (uint8; NO_TIER
    for a group without scored chunks). `agrees`: whether each chunk's call is the group's."""

    # int32 counts, filled column by column, and the tier set in place: a report of 10^7 reads
    # otherwise holds several int64 arrays per group at once.
    counts = np.empty((n_groups, 3), dtype=np.int32)

    def count(selected: np.ndarray) -> np.ndarray:
        return np.bincount(groups[selected], minlength=n_groups).astype(np.int32)

    for column, tier in enumerate((LOW, MEDIUM, HIGH)):
        counts[:, column] = count(tiers == tier)
    low, medium, high = counts[:, 0], counts[:, 1], counts[:, 2]
    scored = low + medium + high
    high_agreeing = count((tiers == HIGH) & agrees)
    group_tier = np.full(n_groups, LOW, dtype=np.uint8)
    agreeing = high_agreeing + count((tiers == MEDIUM) & agrees)
    group_tier[2 * agreeing >= scored] = MEDIUM
    group_tier[(2 * high_agreeing >= scored) & (high_agreeing == high)] = HIGH
    group_tier[scored == 0] = NO_TIER
    return counts, group_tier
