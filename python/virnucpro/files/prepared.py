"""What `prepare` leaves in its folder for the later stages: the columns of its two tables and its
summary, prepare.json (the record and its reader). Stages and the report read a prepared folder
through this module, so none of them depends on the stage that wrote it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from virnucpro import __version__
from virnucpro.defaults import CHUNK_SIZES
from virnucpro.errors import InputError
from virnucpro.files.json_files import SHA256, is_count, read_json_object
from virnucpro.files.layout import PrepareLayout

CHUNK_FRAMES_COLUMNS = (
    "sequence_id",
    "chunk_index",
    "chunk_id",
    "start",
    "end",
    "length",
    "n_frames",
    "frames",
)
# `record` is the record's number in its file, `file` the file's number among the inputs (from 1).
INPUT_SEQUENCES_COLUMNS = ("sequence_id", "record", "length", "n_chunks", "file")


@dataclass
class PrepareSummary:
    chunk_size: int
    shard_size: int
    # One entry per input file, in reading order: path, format, compressed, sha256, records.
    inputs: list[dict] = field(default_factory=list)
    sequences: int = 0
    rna_sequences: int = 0  # records holding U: read as T
    empty_sequences: int = 0
    bases: int = 0
    chunks: int = 0
    chunks_without_frames: int = 0
    frames: int = 0
    shards: list[dict] = field(default_factory=list)  # [{"name": "shard_00001", "records": n}]
    notes: list[str] = field(default_factory=list)  # what the report should tell about the input
    version: str = __version__

    @property
    def input_sha256(self) -> list[str]:
        return [entry["sha256"] for entry in self.inputs]


def read_summary(outdir: str | Path) -> PrepareSummary | None:
    """The summary of a complete prepare output folder, or None when it is missing, unfinished, or
    not one prepare wrote (a field of another type than prepare writes)."""
    path = PrepareLayout(Path(outdir)).summary
    try:
        data = read_json_object(path)
        summary = PrepareSummary(**data)
    except (InputError, TypeError):
        return None
    counts = (
        "sequences",
        "rna_sequences",
        "empty_sequences",
        "bases",
        "chunks",
        "chunks_without_frames",
        "frames",
    )
    well_formed = (
        is_count(summary.chunk_size)
        and summary.chunk_size in CHUNK_SIZES
        and is_count(summary.shard_size)
        and all(is_count(getattr(summary, name)) for name in counts)
        and isinstance(summary.inputs, list)
        and all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and SHA256.match(e["sha256"])
            for e in summary.inputs
        )
        and isinstance(summary.shards, list)
        and all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and is_count(e.get("records"))
            for e in summary.shards
        )
        and isinstance(summary.notes, list)
        and all(isinstance(note, str) for note in summary.notes)
    )
    return summary if well_formed else None
