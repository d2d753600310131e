"""The report's figures as PNG bytes: the score histograms, the per-sequence tracks, and the
calibration's reliability plot.

Bytes are deterministic: matplotlib's Agg backend, and no timestamps or software names in the PNGs,
so two runs on the same input give identical files.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes; must precede pyplot's import

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize, to_rgba
from matplotlib.patches import Rectangle

from virnucpro.method.calibration import (
    CHUNK_THRESHOLDS,
    Calibration,
    LabelledChunks,
    false_discovery_rate,
    fdr_upper,
)
from virnucpro.method.calls import CALLS, PUBLISHED_CHUNK_THRESHOLD, REGION_KIND
from virnucpro.report.data import ROWS_PER_BATCH, SCORE_BINS, exclusive_cumsum, first_in_lexsort

if TYPE_CHECKING:
    from virnucpro.report.data import ReportData, SequenceTable

# Sequences drawn as tracks and listed in the page's table; the TSV files have all of them.
MAX_TRACKS = 40
_DPI = 100
_PNG_METADATA = {"Software": None}  # matplotlib would stamp its version into the file
_COLORMAP = "viridis"
_UNSCORED_COLOR = "#d0d0d0"
REGION_COLOR = "#c0392b"
_OUTLINED_CHUNKS = 200  # tracks with more chunks are drawn without white outlines


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    plt.close(figure)
    return buffer.getvalue()


def histogram_figure(data: ReportData) -> bytes:
    """P(virus) per frame and per chunk (the chunk's best frame), with the 0.5 line."""
    chunks = data.chunks
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    # Frames and chunks counted per bin, a batch at a time (the frames while they were read): one
    # weighted value per bin draws the same bars as every value would.
    centres = (SCORE_BINS[:-1] + SCORE_BINS[1:]) / 2
    chunk_counts = np.zeros(len(centres), dtype=np.int64)
    for low in range(0, len(chunks), ROWS_PER_BATCH):
        part = slice(low, low + ROWS_PER_BATCH)
        chunk_counts += np.histogram(chunks.max_virus[part][chunks.frame_mask[part] != 0], SCORE_BINS)[0]
    for ax, counts, total, what in (
        (axes[0], data.frame_histogram, data.frames, "frames"),
        (axes[1], chunk_counts, int(chunk_counts.sum()), "chunks (best frame)"),
    ):
        ax.hist(centres, bins=SCORE_BINS, weights=counts, color="#3b6ea5", edgecolor="white")
        ax.axvline(0.5, color="#b33", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("P(virus)")
        ax.set_ylabel("count")
        ax.set_title(f"{total} {what}")
    return png_bytes(figure)


def _ranking_keys(sequences: SequenceTable, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """np.lexsort's keys (the last first): most viral, then longest, then input order."""
    fraction = np.nan_to_num(sequences.viral_fraction(rows), nan=0.0)
    return sequences.record[rows], -sequences.length[rows], -fraction


def ranked_sequences(data: ReportData, rows: np.ndarray) -> np.ndarray:
    """The sequence `rows`, most viral first, then longest, then input order."""
    return rows[np.lexsort(_ranking_keys(data.sequences, rows))]


def top_sequences(
    data: ReportData,
    count: int,
    where: Callable[[slice], np.ndarray] | None = None,
    batch: int | None = None,
) -> np.ndarray:
    """The first `count` rows of every sequence (or of those where `where(rows)` holds) in the
    order of `ranked_sequences`. Ranked `batch` rows at a time (`SequenceTable.spans`), keeping
    each batch's first `count`: the keys of every sequence would be about 20 bytes a sequence."""
    sequences, kept = data.sequences, [np.empty(0, dtype=np.int64)]
    for rows, _ in sequences.spans(batch):
        candidates = np.arange(rows.start, rows.stop)
        if where is not None:
            candidates = candidates[where(rows)]
        kept.append(candidates[first_in_lexsort(_ranking_keys(sequences, candidates), count)])
    candidates = np.sort(np.concatenate(kept))  # position order: ties go to the earlier row
    return candidates[first_in_lexsort(_ranking_keys(sequences, candidates), count)]


def track_sequences(data: ReportData) -> np.ndarray:
    """Rows of the sequences drawn as tracks, in ranked order: the most viral scored ones, with up
    to a quarter of the tracks kept for sequences not called virus that hold a viral region
    (prophage-like), which a ranking by viral fraction would leave out."""
    sequences = data.sequences

    def scored(rows: slice) -> np.ndarray:
        return sequences.chunks_scored[rows] > 0

    region_only = top_sequences(
        data, MAX_TRACKS // 4, lambda rows: scored(rows) & (sequences.kind[rows] == REGION_KIND)
    )
    # at most len(region_only) of the first MAX_TRACKS scored ones are among region_only
    first = top_sequences(data, MAX_TRACKS, scored)
    rest = first[~np.isin(first, region_only)][: MAX_TRACKS - len(region_only)]
    chosen = np.sort(np.concatenate([region_only, rest]))
    return ranked_sequences(data, chosen)


def tracks_figure(data: ReportData, chosen: np.ndarray) -> bytes:
    """One line per sequence of `chosen` (rows in drawing order: `track_sequences`), each chunk
    coloured by its best P(virus) (grey: no stop-free frame), and its viral regions as red bars
    above it."""
    sequences, chunks, regions = data.sequences, data.chunks, data.regions.table
    height = 1.4 + 0.36 * max(len(chosen), 1)
    figure, ax = plt.subplots(figsize=(10, height), constrained_layout=True)
    norm = Normalize(0.0, 1.0)
    cmap = plt.get_cmap(_COLORMAP)
    longest = int(sequences.length[chosen].max()) if len(chosen) else 1
    first = sequences.first_chunk
    first_region = exclusive_cumsum(sequences.viral_regions)
    for row, sequence in enumerate(chosen.tolist()):
        y = len(chosen) - 1 - row
        ax.add_patch(
            Rectangle((0, y - 0.04), int(sequences.length[sequence]), 0.08, color="#888888", linewidth=0)
        )
        own = slice(first[sequence], first[sequence] + sequences.n_chunks[sequence])
        colors = cmap(norm(np.nan_to_num(chunks.max_virus[own])))
        colors[~chunks.scored[own]] = to_rgba(_UNSCORED_COLOR)
        # One collection per track (a chromosome has 10^5 chunks); no outlines once they would
        # be thinner than a pixel apart.
        ax.broken_barh(
            np.stack([chunks.start[own] - 1, chunks.length[own]], axis=1),
            (y - 0.3, 0.6),
            facecolors=colors,
            edgecolor="white",
            linewidth=0.5 if own.stop - own.start <= _OUTLINED_CHUNKS else 0,
        )
        mine = slice(first_region[sequence], first_region[sequence] + sequences.viral_regions[sequence])
        if mine.stop > mine.start:
            ax.broken_barh(
                np.stack([regions.start[mine] - 1, regions.length[mine]], axis=1),
                (y + 0.33, 0.12),
                facecolors=REGION_COLOR,
                linewidth=0,
            )
    labels = [
        f"{short_name(sequence_id)} ({CALLS[call]}{', ' + str(n) + ' region' + 's' * (n > 1) if n else ''})"
        for sequence_id, call, n in zip(
            sequences.ids.take(chosen).to_pylist(),
            sequences.call[chosen].tolist(),
            sequences.viral_regions[chosen].tolist(),
            strict=True,
        )
    ]
    ax.set_xlim(0, longest * 1.01)
    ax.set_ylim(-0.7, max(len(chosen), 1) - 0.3)
    ax.set_yticks(range(len(chosen)))
    ax.set_yticklabels(labels[::-1], fontsize=8)
    ax.set_xlabel("position (bp)")
    ax.set_title(
        "chunks per sequence, coloured by best P(virus); red bars: viral regions"
        if len(chosen)
        else "no scored sequence"
    )
    colorbar = figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.03, pad=0.01)
    colorbar.set_label("P(virus)")
    return png_bytes(figure)


def short_name(name: str, limit: int = 30) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def reliability_png(chunks: LabelledChunks, calibration: Calibration) -> bytes:
    """Left: observed share of truly viral chunks per P(virus) bin against the diagonal.
    Right: chunk FDR (with its upper bound), precision and recall against the margin threshold."""
    truth = chunks.truth[chunks.sequence]
    bins = np.linspace(0.0, 1.0, 11)
    which = np.clip(np.digitize(chunks.max_virus, bins) - 1, 0, bins.size - 2)
    count = np.bincount(which, minlength=bins.size - 1)
    viral = np.bincount(which, weights=truth, minlength=bins.size - 1)
    predicted = np.bincount(which, weights=chunks.max_virus, minlength=bins.size - 1)
    shown = count > 0
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfectly calibrated")
    left.plot(
        predicted[shown] / count[shown], viral[shown] / count[shown], marker="o", color="#3b6ea5",
        label="labelled chunks",
    )  # fmt: skip
    for x, y, n in zip(
        predicted[shown] / count[shown], viral[shown] / count[shown], count[shown], strict=True
    ):
        left.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.set_xlabel("mean best P(virus) of the chunks in the bin")
    left.set_ylabel("share labelled virus")
    left.set_title(f"reliability ({int(count.sum())} chunks)")
    left.legend(loc="upper left", fontsize=8)

    fdr = false_discovery_rate(calibration.chunk_true, calibration.chunk_false)
    positives = max(calibration.chunk_positives, 1)
    right.plot(CHUNK_THRESHOLDS, fdr, color="#b33", label="FDR")
    right.plot(
        CHUNK_THRESHOLDS, fdr_upper(calibration.chunk_true, calibration.chunk_false), color="#b33",
        linestyle=":", label="FDR, 95% upper bound",
    )  # fmt: skip
    right.plot(CHUNK_THRESHOLDS, calibration.chunk_true / positives, color="#3b6ea5", label="recall")
    right.axhline(calibration.target_fdr, color="#555555", linewidth=0.8, linestyle="--")
    chosen = calibration.chunk_index(calibration.target_fdr)
    if chosen is not None:
        right.axvline(CHUNK_THRESHOLDS[chosen], color="#2a2", linewidth=1, label="chosen threshold")
    right.axvline(
        PUBLISHED_CHUNK_THRESHOLD, color="#999999", linewidth=0.8, linestyle="--", label="published rule"
    )
    right.set_xlim(-1, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("chunk margin threshold (max P(virus) - max P(others))")
    right.set_title(f"chunk calls, target FDR {calibration.target_fdr}")
    right.legend(loc="center left", fontsize=8)
    return png_bytes(figure)
