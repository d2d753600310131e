"""Options of the report (viral regions, confidence tiers, calibration) that `report`, `run` and
`calibrate` share, each defined once; kept apart from the command modules so that importing them
registers no command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from virnucpro.defaults import MAX_CHUNKS_PER_SEQUENCE

if TYPE_CHECKING:  # the report module loads pyarrow and matplotlib; commands import it when they run
    from virnucpro.stages.report import ReportOptions

RegionMaxGap = Annotated[
    int,
    typer.Option(
        "--region-max-gap",
        min=0,
        max=MAX_CHUNKS_PER_SEQUENCE,
        help="A viral region bridges at most this many consecutive chunks that are not viral (called "
        "others, or unscored); at most 2147483647, more chunks than a sequence can have.",
    ),
]
RegionMinChunks = Annotated[
    int,
    typer.Option(
        "--region-min-chunks",
        min=1,
        max=MAX_CHUNKS_PER_SEQUENCE,
        help="A viral region holds at least this many viral chunks (1 in sequences of one or two chunks); "
        "at most 2147483647, more chunks than a sequence can have.",
    ),
]
ConfidenceHigh = Annotated[
    float,
    typer.Option(
        "--confidence-high",
        min=0.0,
        max=1.0,
        help="A chunk is high-confidence when its called class's best score over its frames is at least this.",
    ),
]
ConfidenceMedium = Annotated[
    float,
    typer.Option(
        "--confidence-medium",
        min=0.0,
        max=1.0,
        help="A chunk is medium-confidence when its called class's best score is at least this (and below "
        "--confidence-high); low otherwise.",
    ),
]
TargetFdr = Annotated[
    float,
    typer.Option(
        "--target-fdr",
        min=0.0,
        max=1.0,
        help="False discovery rate the calibrated thresholds must meet (with --calibration; for "
        "`calibrate`, the one it chooses thresholds for).",
    ),
]
CalibrationFile = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        help="calibration.json of `virnucpro calibrate`: call chunks and sequences with its thresholds "
        "for --target-fdr and write estimated FDRs (default: the published rule, no FDR).",
    ),
]


def report_options(values: dict) -> ReportOptions:
    """The report options among a command's parameters (`values`, its `locals()`; `report` and `run`
    name them alike), checked now (one line on a bad value), before any work starts."""
    import dataclasses

    from virnucpro.stages.report import ReportOptions

    names = {field.name for field in dataclasses.fields(ReportOptions)}
    options = ReportOptions(**{name: value for name, value in values.items() if name in names})
    options.check()
    return options
