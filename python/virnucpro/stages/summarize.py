"""The `summarize` stage: one summary of many samples' results (summary.tsv, summary.json,
summary.html and MultiQC custom content) in one folder; see `virnucpro.summary`.

Every sample's files are read and checked before anything is written; the outputs are the
project's own files (the folder's record), written atomically, summary.json last: a rerun replaces
them, and refuses any other file at their names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from virnucpro.files.layout import SUMMARY_HTML, SUMMARY_JSON, SUMMARY_OUTPUTS, SUMMARY_TSV
from virnucpro.files.manifest import FINISHED, SampleSpec
from virnucpro.files.outdir import begin_outputs, check_outputs
from virnucpro.report.summary import READ_FILES, Row, report_link, summary_rows, write_json, write_tsv

log = logging.getLogger("virnucpro")
COMMAND = "virnucpro summarize"


def summarize(samples: Sequence[SampleSpec], outdir: str | Path, from_manifest: bool = False) -> list[Row]:
    """Write the summary of `samples` (in their order) into `outdir`; returns its rows.
    `from_manifest`: the samples' statuses are the manifest's (a finished sample without run.json is
    an error); otherwise a folder without run.json is a failed sample."""
    from virnucpro.report.multiqc import write_multiqc_files
    from virnucpro.report.summary_html import write_summary_html

    outdir = Path(outdir)
    inputs = [spec.folder / name for spec in samples if spec.folder is not None for name in READ_FILES]
    check_outputs(outdir, inputs, SUMMARY_OUTPUTS, COMMAND)  # refused now, not after the reading
    rows = summary_rows(samples, from_manifest)
    links = [report_link(spec, row, outdir) for spec, row in zip(samples, rows, strict=True)]
    begin_outputs(outdir, inputs, SUMMARY_OUTPUTS, SUMMARY_JSON, COMMAND)
    write_tsv(rows, outdir / SUMMARY_TSV)
    write_summary_html(rows, links, outdir / SUMMARY_HTML)
    write_multiqc_files(rows, outdir)
    write_json(rows, outdir / SUMMARY_JSON)
    finished = sum(row["status"] == FINISHED for row in rows)
    log.info(
        "summarize: %d sample(s), %d finished, %d failed; %d viral sequences in all; summary in %s",
        len(rows),
        finished,
        len(rows) - finished,
        sum(int(row["viral_sequences"] or 0) for row in rows),
        outdir,
    )
    return rows
