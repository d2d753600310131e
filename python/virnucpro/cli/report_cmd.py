"""`virnucpro report`: the final tables, FASTA, HTML report and run.json from all scores."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.cli.options import MinViralFraction, Quiet
from virnucpro.defaults import DEFAULT_MIN_VIRAL_FRACTION
from virnucpro.errors import InputError
from virnucpro.progress import configure_logging


def read_run_info(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"{path}: cannot read --run-info ({err.strerror})") from None
    except ValueError as err:
        raise InputError(f"{path}: --run-info is not valid JSON ({err})") from None
    if not isinstance(content, dict):
        raise InputError(f"{path}: --run-info must hold a JSON object")
    return content


@app.command("report")
def report_command(
    inputs: list[Path] = typer.Option(
        ...,
        "--input",
        help="The reads or contigs given to prepare (for viral.fa); repeat for a sample of several "
        "files, in prepare's order.",
    ),
    prepared: Path = typer.Option(
        ..., "--prepared", help="The prepare stage's output folder (chunk_frames.tsv ...)."
    ),
    scores: list[Path] = typer.Option(
        None,
        "--scores",
        help="Every shard_NNNNN.scores.parquet of the run, or a folder holding them; several may follow "
        "one --scores.",
    ),
    more_scores: list[Path] = typer.Argument(
        None, help="Further score files (`--scores A B C` puts B, C here).", show_default=False
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Folder for the final outputs."),
    min_viral_fraction: MinViralFraction = DEFAULT_MIN_VIRAL_FRACTION,
    run_info: Path = typer.Option(
        None, "--run-info", help="JSON file whose keys are merged into run.json (e.g. workflow metadata)."
    ),
    quiet: Quiet = False,
) -> None:
    """Write the final tables, viral.fa, report.html and run.json from all scores.

    Writes prediction_results.txt and prediction_results_highestscore.csv (the original's layout),
    chunks.tsv, sequences.tsv, viral.fa, report.html with its PNG figures, and run.json."""
    configure_logging(quiet=quiet)
    files = score_files([*(scores or []), *(more_scores or [])])
    from virnucpro.report import report

    report(inputs, prepared, files, outdir, min_viral_fraction, read_run_info(run_info), quiet=quiet)


def score_files(paths: list[Path]) -> list[Path]:
    """The given files, with each folder replaced by the score files it holds."""
    from virnucpro.paths import SCORES_SUFFIX

    if not paths:
        raise InputError(f"--scores: give the shard_NNNNN{SCORES_SUFFIX} files, or the folder holding them")
    files = []
    for path in paths:
        # A folder may hold none: an input without any stop-free frame has nothing to score.
        files.extend(sorted(path.glob(f"shard_*{SCORES_SUFFIX}")) if path.is_dir() else [path])
    return files
