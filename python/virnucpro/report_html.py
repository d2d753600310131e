"""`report.html`: one self-contained page (no network, no scripts) with the run's summary, the score
histograms and per-sequence tracks, and the figures also as PNG files beside it.

Bytes are deterministic: matplotlib's Agg backend, no timestamps or software names in the PNGs,
nothing time- or host-dependent in the page, so two runs on the same input give identical files.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes; must precede pyplot's import

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from virnucpro import __version__
from virnucpro.atomic import atomic_open
from virnucpro.paths import HISTOGRAM_PNG, REPORT_HTML, TRACKS_PNG
from virnucpro.report_data import CALLS, SCORE_BINS

if TYPE_CHECKING:
    from virnucpro.report_data import ReportData

# Sequences drawn as tracks and listed in the page's table; the TSV files have all of them.
MAX_TRACKS = 40
MAX_TABLE_ROWS = 200
_DPI = 100
_PNG_METADATA = {"Software": None}  # matplotlib would stamp its version into the file
_COLORMAP = "viridis"
_UNSCORED_COLOR = "#d0d0d0"


def _png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    plt.close(figure)
    return buffer.getvalue()


def histogram_figure(data: ReportData) -> bytes:
    """P(virus) per frame and per chunk (the chunk's best frame), with the 0.5 line."""
    chunks = data.chunks
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    # The frames were counted per bin while they were read: one weighted value per bin draws the
    # same bars as every value would.
    centres = (SCORE_BINS[:-1] + SCORE_BINS[1:]) / 2
    for ax, values, weights, count, what in (
        (axes[0], centres, data.frame_histogram, data.frames, "frames"),
        (axes[1], chunks.max_virus[chunks.scored], None, int(chunks.scored.sum()), "chunks (best frame)"),
    ):
        ax.hist(values, bins=SCORE_BINS, weights=weights, color="#3b6ea5", edgecolor="white")
        ax.axvline(0.5, color="#b33", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("P(virus)")
        ax.set_ylabel("count")
        ax.set_title(f"{count} {what}")
    return _png_bytes(figure)


def ranked_sequences(data: ReportData, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows of the sequences (all, or `rows`), most viral first, then longest, then input order."""
    sequences = data.sequences
    rows = np.arange(len(sequences)) if rows is None else rows
    fraction = np.nan_to_num(sequences.viral_fraction[rows], nan=0.0)
    return rows[np.lexsort((sequences.record[rows], -sequences.length[rows], -fraction))]


def track_sequences(data: ReportData) -> np.ndarray:
    """Rows of the sequences drawn as tracks: the MAX_TRACKS most viral scored ones."""
    return ranked_sequences(data, np.flatnonzero(data.sequences.chunks_scored))[:MAX_TRACKS]


def tracks_figure(data: ReportData) -> bytes:
    """One line per sequence, each chunk coloured by its best P(virus); grey: no stop-free frame."""
    sequences, chunks = data.sequences, data.chunks
    chosen = track_sequences(data)
    height = 1.2 + 0.32 * max(len(chosen), 1)
    figure, ax = plt.subplots(figsize=(10, height), constrained_layout=True)
    norm = Normalize(0.0, 1.0)
    cmap = plt.get_cmap(_COLORMAP)
    longest = int(sequences.length[chosen].max()) if len(chosen) else 1
    first = sequences.first_chunk
    for row, sequence in enumerate(chosen.tolist()):
        y = len(chosen) - 1 - row
        ax.add_patch(
            Rectangle((0, y - 0.04), int(sequences.length[sequence]), 0.08, color="#888888", linewidth=0)
        )
        own = slice(first[sequence], first[sequence] + sequences.n_chunks[sequence])
        for start, length, scored, virus in zip(
            chunks.start[own].tolist(),
            chunks.length[own].tolist(),
            chunks.scored[own].tolist(),
            chunks.max_virus[own].tolist(),
            strict=True,
        ):
            color = cmap(norm(virus)) if scored else _UNSCORED_COLOR
            ax.add_patch(
                Rectangle(
                    (start - 1, y - 0.35), length, 0.7, facecolor=color, edgecolor="white", linewidth=0.5
                )
            )
    labels = [
        f"{_short(sequence_id)} ({CALLS[call]})"
        for sequence_id, call in zip(
            sequences.ids.take(chosen).to_pylist(), sequences.call[chosen].tolist(), strict=True
        )
    ]
    ax.set_xlim(0, longest * 1.01)
    ax.set_ylim(-0.7, max(len(chosen), 1) - 0.3)
    ax.set_yticks(range(len(chosen)))
    ax.set_yticklabels(labels[::-1], fontsize=8)
    ax.set_xlabel("position (bp)")
    ax.set_title("chunks per sequence, coloured by best P(virus)" if len(chosen) else "no scored sequence")
    colorbar = figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.03, pad=0.01)
    colorbar.set_label("P(virus)")
    return _png_bytes(figure)


def _short(name: str, limit: int = 30) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _image(png: bytes, alt: str, file_name: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(alt)} (also <code>{file_name}</code>)</figcaption></figure>"
    )


def _table(header: list[str], rows: list[list[object]], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f5f8; }
table.numbers td:nth-child(n+2) { text-align: right; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; }
"""


def render_html(data: ReportData, title: str, histogram_png: bytes, tracks_png: bytes) -> str:
    counts = data.counts()
    summary_rows = [
        ["input", title],
        ["chunk size", f"{data.chunk_size} bp"],
        ["sequences", counts["sequences"]],
        ["called virus", counts["sequences_virus"]],
        ["called others", counts["sequences_others"]],
        ["unscored (no stop-free frame)", counts["sequences_unscored"]],
        ["chunks", counts["chunks"]],
        ["chunks scored", counts["chunks_scored"]],
        ["viral chunks", counts["chunks_virus"]],
        ["frames scored", counts["frames"]],
        ["minimum viral fraction for a virus call", data.min_viral_fraction],
    ]
    model_rows = [[key, value] for key, value in sorted(data.provenance.items())]
    sequences = data.sequences
    shown_rows = ranked_sequences(data)[:MAX_TABLE_ROWS]
    sequence_rows = [
        [sequence_id, length, n_chunks, scored, viral, f"{fraction:.4f}" if scored else "", CALLS[call]]
        for sequence_id, length, n_chunks, scored, viral, fraction, call in zip(
            sequences.ids.take(shown_rows).to_pylist(),
            sequences.length[shown_rows].tolist(),
            sequences.n_chunks[shown_rows].tolist(),
            sequences.chunks_scored[shown_rows].tolist(),
            sequences.viral_chunks[shown_rows].tolist(),
            sequences.viral_fraction[shown_rows].tolist(),
            sequences.call[shown_rows].tolist(),
            strict=True,
        )
    ]
    shown = (
        f"the {MAX_TABLE_ROWS} most viral of {len(sequences)}; all are in sequences.tsv"
        if len(sequences) > MAX_TABLE_ROWS
        else "all sequences"
    )
    tracks_note = (
        f"the {MAX_TRACKS} most viral scored sequences"
        if len(track_sequences(data)) == MAX_TRACKS
        else "every scored sequence"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>VirNucPro report: {html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>VirNucPro report: {html.escape(title)}</h1>",
        '<section id="summary"><h2>Summary</h2>',
        _table(["", "value"], summary_rows, "numbers"),
        "</section>",
        '<section id="scores"><h2>Score distribution</h2>',
        _image(histogram_png, "P(virus) of every frame and of every chunk's best frame", HISTOGRAM_PNG),
        "</section>",
        f'<section id="tracks"><h2>Per-sequence tracks ({tracks_note})</h2>',
        _image(tracks_png, "chunks along each sequence, coloured by best P(virus)", TRACKS_PNG),
        "</section>",
        f'<section id="sequences"><h2>Sequences ({shown})</h2>',
        _table(
            ["sequence", "length (bp)", "chunks", "scored", "viral", "viral fraction", "call"],
            sequence_rows,
            "numbers",
        ),
        "</section>",
        '<section id="models"><h2>Models</h2>',
        _table(["", "value"], model_rows) if model_rows else "<p>no provenance recorded</p>",
        "</section>",
        f"<footer><p>virnucpro {html.escape(__version__)}; all numbers are in the TSV files beside this page."
        "</p></footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html_report(data: ReportData, outdir: Path, title: str) -> list[Path]:
    """Write the two PNG figures and `report.html` (figures embedded) into `outdir`."""
    histogram_png = histogram_figure(data)
    tracks_png = tracks_figure(data)
    written = []
    for name, png in ((HISTOGRAM_PNG, histogram_png), (TRACKS_PNG, tracks_png)):
        with atomic_open(outdir / name, "wb") as out:
            out.write(png)
        written.append(outdir / name)
    with atomic_open(outdir / REPORT_HTML, "w", encoding="utf-8", newline="\n") as out:
        out.write(render_html(data, title, histogram_png, tracks_png))
    written.append(outdir / REPORT_HTML)
    return written
