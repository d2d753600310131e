"""Calls and what they are stored as: the rule that calls a chunk viral, the names of sequence calls
and of what a sequence holds, and the per-sequence mean every table reports.

A chunk is called virus when its margin, max P(virus) - max P(others) over its frames, is at least
a threshold. The published rule (the original tool's consensus: max P(virus) >= max P(others)) is
a threshold of 0; a calibration (`virnucpro calibrate`) may choose another.
"""

from __future__ import annotations

import numpy as np

PUBLISHED_CHUNK_THRESHOLD = 0.0

# Sequence calls, stored as their number in this tuple.
CALLS = ("unscored", "others", "virus")
UNSCORED, OTHERS, VIRUS = range(3)
# What a sequence holds (see method/regions.py), stored as their number in this tuple.
KINDS = ("none", "region", "viral")
NO_KIND, REGION_KIND, VIRAL_KIND = range(3)
GROUPS_PER_CHECK = 1 << 18  # groups whose float32-rounded mean is checked at a time (group_means)


def margin_calls(margins: np.ndarray, threshold: float) -> np.ndarray:
    """Chunks called virus: margin (float32) >= the threshold rounded to float32, so that a margin
    written as 0.9 meets a threshold of 0.9; NaN margins (unscored chunks) are never called."""
    return margins >= np.float32(threshold)


def group_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """numpy's `mean(dtype=float64)` of each consecutive group of `counts` (all > 0) float32 values.

    One np.add.reduceat adds in another order than numpy's pairwise mean, so the last bits of a
    float64 mean may differ; what is written is that mean rounded to float32. Where the float64
    mean lies so close to a float32 rounding boundary that the order could matter, the group is
    averaged again with numpy's own mean (about one group in 10^7).
    """
    starts = np.cumsum(counts, dtype=np.int64) - counts
    means = np.add.reduceat(values, starts, dtype=np.float64) / counts
    # The check below holds several float64 arrays per group: done GROUPS_PER_CHECK at a time.
    for low in range(0, len(means), GROUPS_PER_CHECK):
        part = slice(low, low + GROUPS_PER_CHECK)
        block = means[part]
        rounded = block.astype(np.float32)
        below = np.nextafter(rounded, np.float32(-np.inf)).astype(np.float64)
        above = np.nextafter(rounded, np.float32(np.inf)).astype(np.float64)
        boundary_distance = np.minimum(
            np.abs(block - (rounded + below) / 2), np.abs(block - (rounded + above) / 2)
        )
        # Either order of adding stays within (count + 1) float64 rounding errors of the exact mean
        # of these non-negative values; the margin below is several times that.
        uncertain = np.flatnonzero(boundary_distance <= 2.0**-49 * (counts[part] + 1) * np.abs(block))
        for group in (uncertain + low).tolist():
            means[group] = values[starts[group] : starts[group] + counts[group]].mean(dtype=np.float64)
    return means
