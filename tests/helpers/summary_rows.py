"""What a summary row must hold, read from a finished sample's own files with nothing of the code
under test: the check that summary.tsv (from `virnucpro summarize` or the pipeline's SUMMARY) and
MultiQC's General Statistics agree with each sample's sequences.tsv."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def expected_row(folder: Path) -> dict[str, str]:
    """A finished sample's counts, less its `sample` column."""
    sequences = read_tsv(folder / "sequences.tsv")
    regions = read_tsv(folder / "viral_regions.tsv")
    run = json.loads((folder / "run.json").read_text())
    viral = [s for s in sequences if s["call"] == "virus"]
    calibrated = run["calls"]["rule"] == "calibrated"
    return {
        "status": "finished",
        "failed_stage": "",
        "input_files": str(len(run["inputs"])),
        "sequences": str(len(sequences)),
        "bases": str(sum(int(s["length"]) for s in sequences)),
        "chunks": str(sum(int(s["n_chunks"]) for s in sequences)),
        "chunks_scored": str(sum(int(s["chunks_scored"]) for s in sequences)),
        "viral_chunks": str(sum(int(s["viral_chunks"]) for s in sequences)),
        "viral_sequences": str(len(viral)),
        "sequences_with_regions": str(sum(int(s["viral_regions"]) > 0 for s in sequences)),
        "viral_bases_in_regions": str(sum(int(r["length"]) for r in regions)),
        "viral_high": str(sum(s["confidence"] == "high" for s in viral)),
        "viral_medium": str(sum(s["confidence"] == "medium" for s in viral)),
        "viral_low": str(sum(s["confidence"] == "low" for s in viral)),
        "calibrated": "yes" if calibrated else "no",
        "target_fdr": str(run["calls"]["target_fdr"]) if calibrated else "",
    }
