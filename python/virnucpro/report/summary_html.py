"""`summary.html`: one self-contained page for a run of many samples (no network, no scripts, no
fonts or images from elsewhere): a bar per sample (viral sequences and sequences with viral regions,
plain HTML and CSS), the table of summary.tsv, and a link to each finished sample's report.html.
The look is report.html's (`report_html`'s style and table helper); the bytes depend only on the
rows, so two summaries of the same results are identical files."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from virnucpro import __version__
from virnucpro.files.atomic import atomic_open
from virnucpro.files.manifest import FINISHED
from virnucpro.report.figures import REGION_COLOR
from virnucpro.report.html import PAGE_STYLE, html_table
from virnucpro.report.summary import COLUMNS, Row, cell

_VIRAL_COLOR = "#3b6ea5"  # report.html's histogram bars
_BAR_STYLE = f"""
body {{ max-width: 1240px; }} .wide {{ overflow-x: auto; }} table.samples {{ font-size: 0.8em; }}
table.samples th, table.samples td {{ padding: 0.25em 0.35em; }}
table.samples td:nth-child(n+4) {{ text-align: right; }}
tr.failed td {{ background: #fdf0ef; }}
.bars {{ display: grid; grid-template-columns: minmax(8em, max-content) 1fr; gap: 0.35em 1em;
         align-items: center; font-size: 0.9em; }}
.track {{ display: flex; flex-direction: column; gap: 2px; }}
.bar {{ height: 0.8em; min-width: 1px; }}
.bar.viral {{ background: {_VIRAL_COLOR}; }} .bar.regions {{ background: {REGION_COLOR}; }}
.line {{ display: flex; align-items: center; gap: 0.5em; }} .area {{ flex: 1; }}
.value {{ font-size: 0.85em; color: #444; white-space: nowrap; flex: none; width: 12em; }}
.failed-note {{ color: #b33; }}
.key span {{ display: inline-block; width: 1em; height: 0.8em; margin: 0 0.3em 0 1em; vertical-align: middle; }}
"""
COLUMN_NOTES = {
    "sample": "the sample's name; a link to its report.html",
    "status": "finished, or failed (with the stage it stopped at)",
    "failed_stage": "PREPARE, EMBED or REPORT for a failed sample; empty when unknown",
    "input_files": "input files read as the sample (run.json)",
    "sequences": "input sequences (rows of sequences.tsv)",
    "bases": "their total length in bp",
    "chunks": "chunks of all sequences",
    "chunks_scored": "chunks with a stop-free frame, scored",
    "viral_chunks": "chunks called virus",
    "viral_sequences": "sequences called virus (call = virus in sequences.tsv)",
    "sequences_with_regions": "sequences with at least one viral region (called virus or not)",
    "viral_bases_in_regions": "bp inside viral regions (viral_regions.tsv)",
    "viral_high": "sequences called virus with high confidence",
    "viral_medium": "... with medium confidence",
    "viral_low": "... with low confidence",
    "calibrated": "yes when the calls were calibrated (--calibration)",
    "target_fdr": "the target FDR of calibrated calls; empty for the published rule",
}


def _link(target: str | None, text: str) -> str:
    if target is None:
        return html.escape(text)
    return f'<a href="{html.escape(quote(target, safe="/:#?=&%"))}">{html.escape(text)}</a>'


def _bars(rows: Sequence[Row], links: Sequence[str | None]) -> str:
    largest = max(
        (max(row["viral_sequences"] or 0, row["sequences_with_regions"] or 0) for row in rows), default=0
    )
    parts = ['<div class="bars">']
    for row, link in zip(rows, links, strict=True):
        name = _link(link, str(row["sample"]))
        if row["status"] != FINISHED:
            stage = f" in {row['failed_stage']}" if row["failed_stage"] else ""
            parts.append(
                f'<div>{name}</div><div class="failed-note">failed{html.escape(stage)}: no results</div>'
            )
            continue
        lines = []
        for kind, column, what in (
            ("viral", "viral_sequences", "viral sequences"),
            ("regions", "sequences_with_regions", "with viral regions"),
        ):
            value = int(row[column])
            width = 100.0 * value / largest if largest else 0.0
            lines.append(
                f'<div class="line"><div class="area"><div class="bar {kind}" style="width: {width:.2f}%" '
                f'title="{value} {what}"></div></div><span class="value">{value} {what}</span></div>'
            )
        parts.append(f'<div>{name}</div><div class="track">{"".join(lines)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _sample_table(rows: Sequence[Row], links: Sequence[str | None]) -> str:
    # Column names break after their underscores, so that the table fits the page's width.
    head = "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in COLUMNS)
    body = []
    for row, link in zip(rows, links, strict=True):
        cells = [_link(link, str(row["sample"]))] + [html.escape(cell(row[c])) for c in COLUMNS[1:]]
        css = ' class="failed"' if row["status"] != FINISHED else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<div class="wide"><table class="samples"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def render_summary(rows: Sequence[Row], links: Sequence[str | None]) -> str:
    finished = sum(row["status"] == FINISHED for row in rows)
    title = f"VirNucPro summary: {len(rows)} sample{'s' * (len(rows) != 1)}"
    failed = len(rows) - finished
    overview = f"{finished} finished" + (f", {failed} failed" if failed else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{PAGE_STYLE}{_BAR_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(overview)}; each sample's name links to its report.</p>",
        '<section id="bars"><h2>Viral sequences per sample</h2>',
        f'<p class="key"><span style="background: {_VIRAL_COLOR}"></span>sequences called virus'
        f'<span style="background: {REGION_COLOR}"></span>sequences with viral regions</p>',
        _bars(rows, links),
        "</section>",
        '<section id="samples"><h2>Samples</h2>',
        _sample_table(rows, links),
        "</section>",
        '<section id="columns"><h2>Columns</h2>',
        html_table(["column", "meaning"], [[c, COLUMN_NOTES[c]] for c in COLUMNS]),
        "</section>",
        f"<footer><p>virnucpro {html.escape(__version__)}; the same numbers are in summary.tsv and "
        "summary.json beside this page.</p></footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_summary_html(rows: Sequence[Row], links: Sequence[str | None], path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(render_summary(rows, links))
