"""`report.html`: one self-contained page (no network, no scripts) with the run's summary, the score
histograms and per-sequence tracks (drawn by `figures`), and the figures also as PNG files beside it.

Bytes are deterministic: nothing time- or host-dependent in the page, so two runs on the same input
give identical files.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from virnucpro import __version__
from virnucpro.files.atomic import atomic_open
from virnucpro.files.layout import HISTOGRAM_PNG, REPORT_HTML, TRACKS_PNG
from virnucpro.method.calls import CALLS, KINDS, REGION_KIND
from virnucpro.method.confidence import HIGH, LOW, MEDIUM, TIERS
from virnucpro.report.data import first_in_lexsort
from virnucpro.report.figures import (
    MAX_TRACKS,
    histogram_figure,
    top_sequences,
    track_sequences,
    tracks_figure,
)

if TYPE_CHECKING:
    from virnucpro.report.data import ReportData

MAX_TABLE_ROWS = 200  # sequences listed in the page's table; the TSV files have all of them


def _image(png: bytes, alt: str, file_name: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(alt)} (also <code>{file_name}</code>)</figcaption></figure>"
    )


def html_table(header: list[str], rows: list[list[object]], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


PAGE_STYLE = """
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
    """The first MAX_TABLE_ROWS region rows: those of sequences not called virus first
    (prophage-like), then by length."""
    table = data.regions.table
    in_viral = data.sequences.kind[table.sequence] != REGION_KIND
    return first_in_lexsort((table.sequence, -table.length, in_viral), MAX_TABLE_ROWS)


def render_html(data: ReportData, title: str, histogram_png: bytes, tracks_png: bytes, tracks: int) -> str:
    """The page; `tracks`: how many sequences tracks_png draws."""
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
    shown_rows = top_sequences(data, MAX_TABLE_ROWS)
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
            sequences.viral_fraction(shown_rows).tolist(),
            sequences.call[shown_rows].tolist(),
            sequences.kind[shown_rows].tolist(),
            sequences.viral_regions[shown_rows].tolist(),
            sequences.tier[shown_rows].tolist(),
            strict=True,
        )
    ]  # fmt: skip
    table = regions.table
    region_shown = ranked_regions(data)
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
        if tracks == MAX_TRACKS
        else "every scored sequence"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>VirNucPro report: {html.escape(title)}</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        f"<h1>VirNucPro report: {html.escape(title)}</h1>",
        '<section id="summary"><h2>Summary</h2>',
        html_table(["", "value"], summary_rows, "numbers"),
        "</section>",
        '<section id="scores"><h2>Score distribution</h2>',
        _image(histogram_png, "P(virus) of every frame and of every chunk's best frame", HISTOGRAM_PNG),
        "</section>",
        f'<section id="tracks"><h2>Per-sequence tracks ({tracks_note})</h2>',
        _image(tracks_png, "chunks along each sequence, coloured by best P(virus), viral regions in red", TRACKS_PNG),
        "</section>",
        f'<section id="regions"><h2>Viral regions ({regions_shown})</h2>',
        html_table(
            ["region", "start", "end", "length (bp)", "viral chunks", "mean P(virus)", "confidence", "sequence kind"],
            region_rows,
            "numbers",
        )
        if region_rows
        else "<p>no viral region</p>",
        "</section>",
        f'<section id="sequences"><h2>Sequences ({shown})</h2>',
        html_table(
            [
                "sequence", "length (bp)", "chunks", "scored", "viral", "viral fraction", "call", "kind",
                "viral regions", "confidence",
            ],
            sequence_rows,
            "numbers",
        ),
        "</section>",
        '<section id="models"><h2>Models</h2>',
        html_table(["", "value"], model_rows) if model_rows else "<p>no provenance recorded</p>",
        "</section>",
        f"<footer><p>virnucpro {html.escape(__version__)}; all numbers are in the TSV files beside this page."
        "</p></footer>",
        "</body></html>",
    ]  # fmt: skip
    return "\n".join(parts) + "\n"


def write_html_report(data: ReportData, outdir: Path, title: str) -> list[Path]:
    """Write the two PNG figures and `report.html` (figures embedded) into `outdir`."""
    histogram_png = histogram_figure(data)
    chosen = track_sequences(data)
    tracks_png = tracks_figure(data, chosen)
    written = []
    for name, png in ((HISTOGRAM_PNG, histogram_png), (TRACKS_PNG, tracks_png)):
        with atomic_open(outdir / name, "wb") as out:
            out.write(png)
        written.append(outdir / name)
    with atomic_open(outdir / REPORT_HTML, "w", encoding="utf-8", newline="\n") as out:
        out.write(render_html(data, title, histogram_png, tracks_png, len(chosen)))
    written.append(outdir / REPORT_HTML)
    return written
