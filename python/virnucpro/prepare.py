"""The `prepare` stage: input sequences to chunk table and frame shards.

Writes, under the output folder:
- `shards/shard_NNNNN.nucleotide.fa` and `shards/shard_NNNNN.protein.faa`: the kept frames,
  `shard_size` records each, numbered from 00001 in input order, `>id\\nseq\\n` without wrapping;
- `chunk_frames.tsv`: every chunk and the frames it kept, also chunks that kept none;
- `input_sequences.tsv`: every input sequence with its length and chunk count (empty ones too);
- `prepare.json`: parameters and counts, written last: the stage is complete when it exists.

Everything is written into a staging folder that replaces the outputs only when the whole input was
read without error, so a failed run never leaves shards that look finished.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from virnucpro import __version__
from virnucpro.defaults import CHUNK_SIZES, DEFAULT_SHARD_SIZE
from virnucpro.errors import InputError
from virnucpro.frames import FRAME_LABELS, FRAME_SETS, translate_batch
from virnucpro.paths import PREPARE_STAGING_PREFIX, PrepareLayout
from virnucpro.progress import progress_task
from virnucpro.sequences import SequenceFile, SequenceRecord

log = logging.getLogger("virnucpro")

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
INPUT_SEQUENCES_COLUMNS = ("sequence_id", "record", "length", "n_chunks")
# Sequences are translated together in batches of about this many bases (see frames.py).
_BATCH_BASES = 4_000_000
_FRAME_COUNTS = [mask.bit_count() for mask in range(64)]
_LABEL_BYTES = [label.encode() for label in FRAME_LABELS]


@dataclass
class PrepareSummary:
    input: str
    input_format: str
    input_compressed: bool
    chunk_size: int
    shard_size: int
    sequences: int = 0
    empty_sequences: int = 0
    bases: int = 0
    chunks: int = 0
    chunks_without_frames: int = 0
    frames: int = 0
    shards: list[dict] = field(default_factory=list)  # [{"name": "shard_00001", "records": n}]
    version: str = __version__


class _ShardWriter:
    """Writes frames into numbered nucleotide/protein shard pairs of `shard_size` records."""

    def __init__(self, layout: PrepareLayout, shard_size: int):
        self.layout = layout
        self.shard_size = shard_size
        self.shards: list[dict] = []
        self._nucleotide: BinaryIO | None = None
        self._protein: BinaryIO | None = None
        self._records = 0

    def write(self, nucleotide_records: list[bytes], protein_records: list[bytes]) -> None:
        """Append formatted records (`>id\\nseq\\n`, the same ids in both lists), filling shards in turn."""
        written = 0
        while written < len(nucleotide_records):
            if self._nucleotide is None or self._records == self.shard_size:
                self._open_next()
            take = min(self.shard_size - self._records, len(nucleotide_records) - written)
            self._nucleotide.write(b"".join(nucleotide_records[written : written + take]))
            self._protein.write(b"".join(protein_records[written : written + take]))
            self._records += take
            written += take

    def _open_next(self) -> None:
        self.close()  # also records the finished shard's count
        number = len(self.shards) + 1
        nucleotide_path, protein_path = self.layout.shard_files(number)
        self._nucleotide = open(nucleotide_path, "wb")  # noqa: SIM115 (closed in close())
        self._protein = open(protein_path, "wb")  # noqa: SIM115
        self.shards.append({"name": nucleotide_path.name.split(".")[0], "records": 0})
        self._records = 0

    def close(self) -> None:
        if self.shards:
            self.shards[-1]["records"] = self._records
        for handle in (self._nucleotide, self._protein):
            if handle is not None:
                handle.close()
        self._nucleotide = self._protein = None


def prepare(
    input_path: str | Path,
    outdir: str | Path,
    chunk_size: int = 500,
    shard_size: int = DEFAULT_SHARD_SIZE,
    quiet: bool = False,
) -> PrepareSummary:
    """Run the stage; raises `InputError` (one line) on bad input or an unusable output folder."""
    if chunk_size not in CHUNK_SIZES:
        raise InputError(f"--chunk-size must be 300 or 500 (the published classifiers), not {chunk_size}")
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, not {shard_size}")
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_staging(outdir)
        staging = Path(tempfile.mkdtemp(prefix=f"{PREPARE_STAGING_PREFIX}{os.getpid()}-", dir=outdir))
    except OSError as err:
        raise InputError(f"{outdir}: cannot write the output folder ({err.strerror})") from None
    try:
        summary = _prepare_into(Path(input_path), staging, chunk_size, shard_size, quiet)
        _publish(staging, outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "prepare: %d sequences, %d chunks (%d without a stop-free frame), %d frames in %d shards",
        summary.sequences,
        summary.chunks,
        summary.chunks_without_frames,
        summary.frames,
        len(summary.shards),
    )
    return summary


def _remove_abandoned_staging(outdir: Path) -> None:
    """Delete staging folders left by a prepare that was killed (its process no longer exists)."""
    for folder in outdir.glob(f"{PREPARE_STAGING_PREFIX}*-*"):
        pid = folder.name.removeprefix(PREPARE_STAGING_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_into(input_path: Path, staging: Path, chunk_size: int, shard_size: int, quiet: bool):
    source = SequenceFile(input_path)
    layout = PrepareLayout(staging)
    layout.shards.mkdir()
    writer = _ShardWriter(layout, shard_size)
    summary = PrepareSummary(str(input_path), "", False, chunk_size, shard_size)
    with (
        open(layout.chunk_frames, "w", encoding="utf-8", newline="\n") as chunks_out,
        open(layout.input_sequences, "w", encoding="utf-8", newline="\n") as sequences_out,
        progress_task(f"prepare {input_path.name}", quiet=quiet, unit="bytes") as progress,
    ):
        if input_path.is_file():
            progress.set_total(source.size)
        chunks_out.write("\t".join(CHUNK_FRAMES_COLUMNS) + "\n")
        sequences_out.write("\t".join(INPUT_SEQUENCES_COLUMNS) + "\n")
        with _cyclic_gc_paused():
            _translate_records(source, chunk_size, writer, (chunks_out, sequences_out), summary, progress)
    writer.close()
    summary.input_format = source.format
    summary.input_compressed = source.compressed
    summary.shards = writer.shards
    with open(layout.summary, "w", encoding="utf-8") as fh:
        json.dump(asdict(summary), fh, indent=2)
        fh.write("\n")
    return summary


@contextmanager
def _cyclic_gc_paused():
    """Pause the cyclic garbage collector: prepare allocates millions of small acyclic objects
    (records, rows, frames), and the collector's passes over them cost about 10% for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _translate_records(source, chunk_size, writer, tables, summary, progress) -> None:
    """Read the records and process them in batches of about _BATCH_BASES bases."""
    batch: list[SequenceRecord] = []
    batch_bases = 0
    for record in source.records():
        batch.append(record)
        batch_bases += len(record.sequence)
        if batch_bases >= _BATCH_BASES:
            _process_batch(batch, chunk_size, writer, *tables, summary)
            progress.set_completed(source.bytes_read())
            batch, batch_bases = [], 0
    _process_batch(batch, chunk_size, writer, *tables, summary)
    progress.set_completed(source.bytes_read())


def _process_batch(batch, chunk_size, writer, chunks_out, sequences_out, summary) -> None:
    if not batch:
        return
    translated = translate_batch([record.sequence for record in batch], chunk_size)
    ids = [batch[i].id for i in translated.sequence.tolist()]
    numbers = translated.index.tolist()
    chunk_ids = [f"{seq_id}_chunk_{number}" for seq_id, number in zip(ids, numbers, strict=True)]
    masks = translated.frame_mask.tolist()
    chunks_out.writelines(
        f"{seq_id}\t{number}\t{chunk_id}\t{start + 1}\t{end}\t{end - start}\t{_FRAME_COUNTS[mask]}\t"
        f"{FRAME_SETS[mask]}\n"
        for seq_id, number, chunk_id, start, end, mask in zip(
            ids, numbers, chunk_ids, translated.start.tolist(), translated.end.tolist(), masks, strict=True
        )
    )
    nucleotide_records, protein_records = [], []
    for row, label, nucleotides, protein in translated.frames:
        frame_id = chunk_ids[row].encode() + _LABEL_BYTES[label]
        nucleotide_records.append(b">%s\n%s\n" % (frame_id, nucleotides))
        protein_records.append(b">%s\n%s\n" % (frame_id, protein))
    writer.write(nucleotide_records, protein_records)
    summary.chunks += len(chunk_ids)
    summary.frames += len(translated.frames)
    summary.chunks_without_frames += masks.count(0)
    n_chunks = np.bincount(translated.sequence, minlength=len(batch)).tolist()
    sequences_out.writelines(
        f"{record.id}\t{record.number}\t{len(record.sequence)}\t{count}\n"
        for record, count in zip(batch, n_chunks, strict=True)
    )
    summary.sequences += len(batch)
    summary.bases += sum(len(record.sequence) for record in batch)
    if 0 in n_chunks:  # empty records are listed, with a warning
        for record, count in zip(batch, n_chunks, strict=True):
            if not count:
                summary.empty_sequences += 1
                log.warning("%s: record %d (%s) is empty: no chunks", summary.input, record.number, record.id)


def _publish(staging: Path, outdir: Path) -> None:
    """Move the finished outputs into place, the completion marker (prepare.json) last."""
    new, old = PrepareLayout(staging), PrepareLayout(outdir)
    old.summary.unlink(missing_ok=True)
    if old.shards.exists():
        shutil.rmtree(old.shards)
    new.shards.rename(old.shards)
    for source, target in (
        (new.chunk_frames, old.chunk_frames),
        (new.input_sequences, old.input_sequences),
        (new.summary, old.summary),  # the completion marker, last
    ):
        source.replace(target)


def read_summary(outdir: str | Path) -> PrepareSummary | None:
    """The summary of a complete prepare output folder, or None when it is missing or unfinished."""
    path = PrepareLayout(Path(outdir)).summary
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PrepareSummary(**data)
    except (OSError, ValueError, TypeError):
        return None
