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
from matplotlib.colors import Normalize, to_rgba
from matplotlib.patches import Rectangle

from virnucpro import __version__
from virnucpro.files.atomic import atomic_open
from virnucpro.files.layout import HISTOGRAM_PNG, REPORT_HTML, TRACKS_PNG
from virnucpro.method.confidence import HIGH, LOW, MEDIUM, TIERS
from virnucpro.report.data import CALLS, KINDS, REGION_KIND, SCORE_BINS

if TYPE_CHECKING:
    from virnucpro.report.data import ReportData

# Sequences drawn as tracks and listed in the page's table; the TSV files have all of them.
MAX_TRACKS = 40
MAX_TABLE_ROWS = 200
_DPI = 100
_PNG_METADATA = {"Software": None}  # matplotlib would stamp its version into the file
_COLORMAP = "viridis"
_UNSCORED_COLOR = "#d0d0d0"
_REGION_COLOR = "#c0392b"
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
    return png_bytes(figure)


def ranked_sequences(data: ReportData, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows of the sequences (all, or `rows`), most viral first, then longest, then input order."""
    sequences = data.sequences
    rows = np.arange(len(sequences)) if rows is None else rows
    fraction = np.nan_to_num(sequences.viral_fraction[rows], nan=0.0)
    return rows[np.lexsort((sequences.record[rows], -sequences.length[rows], -fraction))]


def track_sequences(data: ReportData) -> np.ndarray:
    """Rows of the sequences drawn as tracks, in ranked order: the most viral scored ones, with up
    to a quarter of the tracks kept for sequences not called virus that hold a viral region
    (prophage-like), which a ranking by viral fraction would leave out."""
    sequences = data.sequences
    ranked = ranked_sequences(data, np.flatnonzero(sequences.chunks_scored))
    region_only = ranked[sequences.kind[ranked] == REGION_KIND][: MAX_TRACKS // 4]
    rest = ranked[~np.isin(ranked, region_only)][: MAX_TRACKS - len(region_only)]
    return ranked[np.isin(ranked, np.concatenate([region_only, rest]))]


def tracks_figure(data: ReportData) -> bytes:
    """One line per sequence, each chunk coloured by its best P(virus) (grey: no stop-free frame),
    and its viral regions as red bars above it."""
    sequences, chunks, regions = data.sequences, data.chunks, data.regions.table
    chosen = track_sequences(data)
    height = 1.4 + 0.36 * max(len(chosen), 1)
    figure, ax = plt.subplots(figsize=(10, height), constrained_layout=True)
    norm = Normalize(0.0, 1.0)
    cmap = plt.get_cmap(_COLORMAP)
    longest = int(sequences.length[chosen].max()) if len(chosen) else 1
    first = sequences.first_chunk
    first_region = np.cumsum(sequences.viral_regions) - sequences.viral_regions
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
                facecolors=_REGION_COLOR,
                linewidth=0,
            )
    labels = [
        f"{_short(sequence_id)} ({CALLS[call]}{', ' + str(n) + ' region' + 's' * (n > 1) if n else ''})"
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


def _calls_text(data: ReportData) -> str:
    settings = data.settings
    rule = (
        f"chunk: margin P(virus) - P(others) >= {settings['chunk_margin_threshold']}; "
        f"sequence: at least {settings['min_viral_fraction']} of its scored chunks viral"
    )
    if settings.get("rule") == "calibrated":
        return f"calibrated for a target FDR of {settings['target_fdr']} ({rule})"
    return f"published rule ({rule})"


def _tier_text(tiers: np.ndarray) -> str:
    counts = np.bincount(tiers, minlength=len(TIERS))
    return " / ".join(str(int(counts[t])) for t in (HIGH, MEDIUM, LOW))


def ranked_regions(data: ReportData) -> np.ndarray:
    """Region rows: those of sequences not called virus first (prophage-like), then by length."""
    table = data.regions.table
    in_viral = data.sequences.kind[table.sequence] != REGION_KIND
    return np.lexsort((table.sequence, -table.length, in_viral))


def render_html(data: ReportData, title: str, histogram_png: bytes, tracks_png: bytes) -> str:
    counts = data.counts()
    sequences, chunks, regions = data.sequences, data.chunks, data.regions
    summary_rows = [
        ["input", title],
        ["chunk size", f"{data.chunk_size} bp"],
        ["calls", _calls_text(data)],
        ["sequences", counts["sequences"]],
        ["called virus", counts["sequences_virus"]],
        ["called others", counts["sequences_others"]],
        ["unscored (no stop-free frame)", counts["sequences_unscored"]],
        ["not called virus, with a viral region", counts["sequences_region_only"]],
        ["viral regions", counts["viral_regions"]],
        ["chunks", counts["chunks"]],
        ["chunks scored", counts["chunks_scored"]],
        ["viral chunks", counts["chunks_virus"]],
        ["frames scored", counts["frames"]],
        ["chunks by confidence: high / medium / low", _tier_text(chunks.tier[chunks.scored])],
        [
            "sequences by confidence: high / medium / low",
            _tier_text(sequences.tier[sequences.chunks_scored > 0]),
        ],
        [
            "confidence tier rule",
            f"high: the called class's best P >= {data.settings['confidence_high']}, "
            f"medium: >= {data.settings['confidence_medium']}",
        ],
        [
            "viral region rule",
            f"viral chunks bridged over at most {data.settings['region_max_gap']} others, at least "
            f"{data.settings['region_min_chunks']} viral chunks (1 in sequences of 1-2 chunks)",
        ],
    ]
    model_rows = [[key, value] for key, value in sorted(data.provenance.items())]
    shown_rows = ranked_sequences(data)[:MAX_TABLE_ROWS]
    sequence_rows = [
        [
            sequence_id, length, n_chunks, scored, viral, f"{fraction:.4f}" if scored else "", CALLS[call],
            KINDS[kind], n_regions, TIERS[tier],
        ]
        for sequence_id, length, n_chunks, scored, viral, fraction, call, kind, n_regions, tier in zip(
            sequences.ids.take(shown_rows).to_pylist(),
            sequences.length[shown_rows].tolist(),
            sequences.n_chunks[shown_rows].tolist(),
            sequences.chunks_scored[shown_rows].tolist(),
            sequences.viral_chunks[shown_rows].tolist(),
            sequences.viral_fraction[shown_rows].tolist(),
            sequences.call[shown_rows].tolist(),
            sequences.kind[shown_rows].tolist(),
            sequences.viral_regions[shown_rows].tolist(),
            sequences.tier[shown_rows].tolist(),
            strict=True,
        )
    ]  # fmt: skip
    table = regions.table
    region_shown = ranked_regions(data)[:MAX_TABLE_ROWS]
    region_rows = [
        [
            f"{sequence_id}|region_{number}",
            start,
            end,
            end - start + 1,
            viral,
            f"{mean:.4f}",
            TIERS[tier],
            KINDS[kind],
        ]
        for sequence_id, number, start, end, viral, mean, tier, kind in zip(
            sequences.ids.take(table.sequence[region_shown]).to_pylist(),
            table.number[region_shown].tolist(),
            table.start[region_shown].tolist(),
            table.end[region_shown].tolist(),
            table.viral_chunks[region_shown].tolist(),
            regions.mean_virus[region_shown].tolist(),
            regions.tier[region_shown].tolist(),
            sequences.kind[table.sequence[region_shown]].tolist(),
            strict=True,
        )
    ]
    shown = (
        f"the {MAX_TABLE_ROWS} most viral of {len(sequences)}; all are in sequences.tsv"
        if len(sequences) > MAX_TABLE_ROWS
        else "all sequences"
    )
    regions_shown = (
        f"{MAX_TABLE_ROWS} of {len(table)}, those of sequences not called virus first; all are in "
        "viral_regions.tsv"
        if len(table) > MAX_TABLE_ROWS
        else f"all {len(table)}, those of sequences not called virus first"
    )
    tracks_note = (
        f"the {MAX_TRACKS} most viral scored sequences, with room kept for sequences with a viral region"
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
        _image(tracks_png, "chunks along each sequence, coloured by best P(virus), viral regions in red", TRACKS_PNG),
        "</section>",
        f'<section id="regions"><h2>Viral regions ({regions_shown})</h2>',
        _table(
            ["region", "start", "end", "length (bp)", "viral chunks", "mean P(virus)", "confidence", "sequence kind"],
            region_rows,
            "numbers",
        )
        if region_rows
        else "<p>no viral region</p>",
        "</section>",
        f'<section id="sequences"><h2>Sequences ({shown})</h2>',
        _table(
            [
                "sequence", "length (bp)", "chunks", "scored", "viral", "viral fraction", "call", "kind",
                "viral regions", "confidence",
            ],
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
    ]  # fmt: skip
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
