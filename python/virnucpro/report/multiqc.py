"""MultiQC custom content for a run's samples, from the same rows as summary.tsv (so the numbers
are equal by construction): three `*_mqc.json` files that `multiqc` finds by their names.

- `virnucpro_general_stats_mqc.json`: General Statistics columns per finished sample: viral
  sequences (% of sequences), viral bases in regions, and the high-confidence share (% of the
  viral sequences called with high confidence; absent for a sample without viral sequences);
- `virnucpro_sequences_mqc.json`: a bar plot section, each finished sample's sequences split by
  call and confidence (virus high / medium / low, not virus);
- `virnucpro_samples_mqc.json`: a table section listing every sample, failed ones included, with
  its status and the stage it failed at.

Written by `virnucpro summarize`, not by each sample's report: only the summary knows the samples'
names (report knows its input files), `virnucpro run`'s folder keeps exactly its outputs, and a
failed sample, which has no report, still gets its line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from virnucpro.files.atomic import atomic_open
from virnucpro.files.layout import MULTIQC_GENERAL_STATS, MULTIQC_SAMPLES, MULTIQC_SEQUENCES
from virnucpro.files.manifest import FINISHED
from virnucpro.report.summary import Row, cell

SECTION_ORDER = ("virnucpro_samples", "virnucpro_sequences")
_GENERAL_STATS_COLUMNS = {
    "viral_sequences_percent": {
        "title": "Viral seqs",
        "description": "Sequences called virus, % of the sample's sequences",
        "min": 0,
        "max": 100,
        "suffix": "%",
        "scale": "Reds",
        "format": "{:,.2f}",
    },
    "viral_bases_in_regions": {
        "title": "Viral bp",
        "description": "Bases inside viral regions (viral_regions.tsv)",
        "min": 0,
        "scale": "Oranges",
        "format": "{:,.0f}",
    },
    "viral_high_percent": {
        "title": "High conf.",
        "description": "Viral sequences called with high confidence, % of the sample's viral sequences",
        "min": 0,
        "max": 100,
        "suffix": "%",
        "scale": "Greens",
        "format": "{:,.2f}",
    },
}
_CATEGORIES = {
    "viral_high": {"name": "virus, high confidence", "color": "#7f0000"},
    "viral_medium": {"name": "virus, medium confidence", "color": "#c0392b"},
    "viral_low": {"name": "virus, low confidence", "color": "#f1948a"},
    "not_viral": {"name": "not virus", "color": "#3b6ea5"},
}


def general_stats(row: Row) -> dict[str, float | int]:
    """A finished sample's General Statistics values (percentages from summary.tsv's counts)."""
    values: dict[str, float | int] = {"viral_bases_in_regions": int(row["viral_bases_in_regions"])}
    if row["sequences"]:
        values["viral_sequences_percent"] = 100.0 * row["viral_sequences"] / row["sequences"]
    if row["viral_sequences"]:
        values["viral_high_percent"] = 100.0 * row["viral_high"] / row["viral_sequences"]
    return values


def multiqc_content(rows: Sequence[Row]) -> dict[str, dict]:
    """The content of each custom content file, by file name."""
    finished = [row for row in rows if row["status"] == FINISHED]
    stats = {
        "id": "virnucpro_general_stats",
        "plot_type": "generalstats",
        "pconfig": [{key: config} for key, config in _GENERAL_STATS_COLUMNS.items()],
        "data": {row["sample"]: general_stats(row) for row in finished},
    }
    sequences = {
        "id": "virnucpro_sequences",
        "section_name": "VirNucPro: sequences by call",
        "description": "Each sample's sequences: called virus (by confidence tier) or not.",
        "plot_type": "bargraph",
        "pconfig": {
            "id": "virnucpro_sequences_plot",
            "title": "VirNucPro: sequences by call",
            "ylab": "sequences",
        },
        "categories": _CATEGORIES,
        "data": {
            row["sample"]: {
                "viral_high": row["viral_high"],
                "viral_medium": row["viral_medium"],
                "viral_low": row["viral_low"],
                "not_viral": row["sequences"] - row["viral_sequences"],
            }
            for row in finished
        },
    }
    samples = {
        "id": "virnucpro_samples",
        "section_name": "VirNucPro: samples",
        "description": "Every sample of the run, failed ones included (summary.tsv has all columns).",
        "plot_type": "table",
        "pconfig": {"id": "virnucpro_samples_table", "title": "VirNucPro: samples"},
        "headers": {
            "status": {"title": "Status"},
            "failed_stage": {"title": "Failed stage"},
            "sequences": {"title": "Sequences", "format": "{:,.0f}"},
            "viral_sequences": {"title": "Viral sequences", "format": "{:,.0f}"},
            "sequences_with_regions": {"title": "With viral regions", "format": "{:,.0f}"},
        },
        "data": {
            row["sample"]: {
                key: row[key]
                for key in (
                    "status",
                    "failed_stage",
                    "sequences",
                    "viral_sequences",
                    "sequences_with_regions",
                )
                if cell(row[key]) != ""
            }
            for row in rows
        },
    }
    return {MULTIQC_GENERAL_STATS: stats, MULTIQC_SEQUENCES: sequences, MULTIQC_SAMPLES: samples}


def write_multiqc_files(rows: Sequence[Row], outdir: Path) -> list[Path]:
    """The custom content files of `rows` in `outdir`."""
    written = []
    for name, content in multiqc_content(rows).items():
        with atomic_open(outdir / name, "w", encoding="utf-8", newline="\n") as out:
            json.dump(content, out, indent=2, ensure_ascii=False)
            out.write("\n")
        written.append(outdir / name)
    return written
