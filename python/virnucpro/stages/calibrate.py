"""The `calibrate` stage: precision, recall and FDR of the calls on a labelled set, and the thresholds
that meet a target FDR, written as calibration.tsv, calibration_reliability.png and calibration.json
(what `run`/`report --calibration` read)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from virnucpro.files.atomic import atomic_open
from virnucpro.files.layout import CALIBRATION_JSON, CALIBRATION_OUTPUTS, CALIBRATION_TSV, RELIABILITY_PNG
from virnucpro.files.outdir import begin_outputs, check_outputs, no_trace_if_refused
from virnucpro.files.score_files import score_files_in
from virnucpro.method.calibration import (
    TABLE_COLUMNS,
    Calibration,
    LabelledChunks,
    calibrate,
    check_target,
    chunks_from_scores,
    chunks_from_tables,
    provenance_of_scores,
    provenance_of_tables,
    read_labels,
    table_rows,
)
from virnucpro.report.figures import reliability_png

log = logging.getLogger("virnucpro")


def calibrate_labelled_set(
    labels: Path, chunk_tables: Sequence[Path], scores: Sequence[Path], outdir: Path, target_fdr: float
) -> None:
    """Calibrate on the sequences labelled in `labels`, read from prepare's `chunk_tables` (the set's
    sequences scored by chunk table) or else from its `scores` (score files, or folders of them)."""
    check_target(target_fdr)
    scored = not chunk_tables
    files = score_files_in(scores) if scored else list(chunk_tables)
    inputs = [labels, *files]
    with no_trace_if_refused(outdir):
        check_outputs(outdir, inputs, CALIBRATION_OUTPUTS, "virnucpro calibrate")
        known = read_labels(labels)
        if scored:
            provenance = provenance_of_scores(files)
            labelled = chunks_from_scores(files, known)
        else:
            provenance = provenance_of_tables(files)
            labelled = chunks_from_tables(files, known)
        write_calibration(labelled, calibrate(labelled, target_fdr, provenance), outdir, inputs)


def write_calibration(
    chunks: LabelledChunks, calibration: Calibration, outdir: Path, inputs: Sequence[Path] = ()
) -> None:
    """calibration.tsv, the reliability plot, and calibration.json (what `--calibration` reads),
    written last: its presence means the others are complete. Earlier outputs in `outdir` are
    replaced only when they are ours (the folder's record), calibration.json first."""
    png = reliability_png(chunks, calibration)
    begin_outputs(outdir, inputs, CALIBRATION_OUTPUTS, CALIBRATION_JSON, "virnucpro calibrate")
    with atomic_open(outdir / CALIBRATION_TSV, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(TABLE_COLUMNS) + "\n")
        out.writelines("\t".join(map(str, row)) + "\n" for row in table_rows(calibration))
    with atomic_open(outdir / RELIABILITY_PNG, "wb") as out:
        out.write(png)
    with atomic_open(outdir / CALIBRATION_JSON, "w", encoding="utf-8", newline="\n") as out:
        # One key per line, each value on its line: readable at the top, compact in the tables.
        content = calibration.to_json()
        out.write("{\n")
        out.write(
            ",\n".join(
                f" {json.dumps(k)}: {json.dumps(v, separators=(', ', ': '))}" for k, v in content.items()
            )
        )
        out.write("\n}\n")
    chosen = calibration.to_json()["chosen"]
    if chosen["chunk_margin_threshold"] is None or chosen["min_viral_fraction"] is None:
        log.warning(
            "calibrate: no threshold meets an FDR of %s on this set (see %s); --calibration with this "
            "file needs a larger --target-fdr",
            calibration.target_fdr,
            outdir / CALIBRATION_TSV,
        )
    else:
        log.info(
            "calibrate: for an FDR of at most %s, chunks need a margin >= %s and sequences >= %s of their "
            "chunks viral; outputs in %s",
            calibration.target_fdr,
            chosen["chunk_margin_threshold"],
            chosen["min_viral_fraction"],
            outdir,
        )
