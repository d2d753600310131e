"""The `prepare` stage: input sequences to chunk table and frame shards.

Writes, under the output folder:
- `shards/shard_NNNNN.nucleotide.fa` and `shards/shard_NNNNN.protein.faa`: the kept frames,
  `shard_size` records each, numbered from 00001 in input order, `>id\\nseq\\n` without wrapping;
- `chunk_frames.tsv`: every chunk and the frames it kept, also chunks that kept none;
- `input_sequences.tsv`: every input sequence with its length and chunk count (empty ones too);
- `prepare.json`: parameters, the inputs (path, format and SHA-256 of each file's bytes, hashed in
  the same pass that reads them) and counts, written last: the stage is complete when it exists.

Several input files form one sample: read in the given order, ids unique across them. RNA is read
as DNA: U as T (the classifier was trained on DNA), counted in prepare.json and noted in the log.

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
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import numpy as np

from virnucpro.defaults import CHUNK_SIZES, DEFAULT_SHARD_SIZE
from virnucpro.errors import InputError, output_error
from virnucpro.files.checksums import file_sha256
from virnucpro.files.hash_cache import HashCache
from virnucpro.files.layout import PREPARE_OUTPUTS, PREPARE_STAGING_PREFIX, PrepareLayout
from virnucpro.files.outdir import (
    claim_prepare_outputs,
    no_trace_if_refused,
    prepare_files,
    remove_dead_staging,
)
from virnucpro.files.ownership import Record, entry_of
from virnucpro.files.prepared import (
    CHUNK_FRAMES_COLUMNS,
    INPUT_SEQUENCES_COLUMNS,
    PrepareSummary,
    read_summary,
)
from virnucpro.files.sequences import SequenceInputs, SequenceRecord, printable
from virnucpro.method.frames import FRAME_LABELS, FRAME_SETS, translate_batch
from virnucpro.progress import progress_task

log = logging.getLogger("virnucpro")

# Sequences are translated together in batches of about this many bases (see method/frames.py).
_BATCH_BASES = 4_000_000
_FRAME_COUNTS = [mask.bit_count() for mask in range(64)]
_LABEL_BYTES = [label.encode() for label in FRAME_LABELS]


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
    inputs: str | Path | Sequence[str | Path],
    outdir: str | Path,
    chunk_size: int = 500,
    shard_size: int = DEFAULT_SHARD_SIZE,
    quiet: bool = False,
) -> PrepareSummary:
    """Run the stage on one input file or several (one sample, in order); raises `InputError` (one
    line) on bad input or an unusable output folder, `OutputError` when writing fails."""
    if chunk_size not in CHUNK_SIZES:
        raise InputError(f"--chunk-size must be 300 or 500 (the published classifiers), not {chunk_size}")
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, not {shard_size}")
    source = SequenceInputs(inputs)
    source.check()
    outdir = Path(outdir)
    with no_trace_if_refused(outdir):  # also a record refused while read: nothing is published then
        record = claim_prepare_outputs(outdir, [f.path for f in source.files], PREPARE_OUTPUTS)
        try:
            remove_dead_staging(outdir)
            staging = Path(tempfile.mkdtemp(prefix=f"{PREPARE_STAGING_PREFIX}{os.getpid()}-", dir=outdir))
        except OSError as err:
            raise InputError(f"{outdir}: cannot write the output folder ({err.strerror})") from None
        try:
            summary = _prepare_into(source, staging, chunk_size, shard_size, quiet)
            _publish(staging, outdir, record)
        except OSError as err:  # reading errors are InputErrors already: this is a write that failed
            raise output_error(outdir, err) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for note in summary.notes:
        log.warning("%s", note)
    log.info(
        "prepare: %d sequences, %d chunks (%d without a stop-free frame), %d frames in %d shards",
        summary.sequences,
        summary.chunks,
        summary.chunks_without_frames,
        summary.frames,
        len(summary.shards),
    )
    return summary


def _prepare_into(source: SequenceInputs, staging: Path, chunk_size: int, shard_size: int, quiet: bool):
    layout = PrepareLayout(staging)
    layout.shards.mkdir()
    writer = _ShardWriter(layout, shard_size)
    summary = PrepareSummary(chunk_size, shard_size)
    label = source.files[0].name if len(source.files) == 1 else f"{len(source.files)} files"
    with (
        open(layout.chunk_frames, "w", encoding="utf-8", newline="\n") as chunks_out,
        open(layout.input_sequences, "w", encoding="utf-8", newline="\n") as sequences_out,
        progress_task(f"prepare {label}", quiet=quiet, unit="bytes") as progress,
    ):
        progress.set_total(source.size)
        chunks_out.write("\t".join(CHUNK_FRAMES_COLUMNS) + "\n")
        sequences_out.write("\t".join(INPUT_SEQUENCES_COLUMNS) + "\n")
        with _cyclic_gc_paused():
            _translate_records(source, chunk_size, writer, (chunks_out, sequences_out), summary, progress)
    writer.close()
    summary.inputs = [
        {
            "path": str(f.path.resolve()) if f.name == str(f.path) else f.name,
            "format": f.format,
            "compressed": f.compressed,
            "sha256": f.sha256,
            "records": f.records_read,
        }
        for f in source.files
    ]
    if summary.rna_sequences:
        summary.notes.append(
            f"{summary.rna_sequences} of {summary.sequences} input sequences hold U (RNA): "
            "read as T, since the classifier was trained on DNA"
        )
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
    names = [f.name for f in source.files]
    batch: list[SequenceRecord] = []
    batch_bases = 0
    for record in source.records():
        batch.append(record)
        batch_bases += len(record.sequence)
        if batch_bases >= _BATCH_BASES:
            _process_batch(batch, chunk_size, writer, *tables, summary, names)
            progress.set_completed(source.bytes_read())
            batch, batch_bases = [], 0
    _process_batch(batch, chunk_size, writer, *tables, summary, names)
    progress.set_completed(source.bytes_read())


def _process_batch(batch, chunk_size, writer, chunks_out, sequences_out, summary, names) -> None:
    if not batch:
        return
    sequences = [record.sequence for record in batch]
    for i, sequence in enumerate(sequences):
        if "U" in sequence or "u" in sequence:  # RNA: the classifier was trained on DNA
            sequences[i] = sequence.replace("U", "T").replace("u", "t")
            summary.rna_sequences += 1
    translated = translate_batch(sequences, chunk_size)
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
        f"{record.id}\t{record.number}\t{len(record.sequence)}\t{count}\t{record.file}\n"
        for record, count in zip(batch, n_chunks, strict=True)
    )
    summary.sequences += len(batch)
    summary.bases += sum(len(record.sequence) for record in batch)
    if 0 in n_chunks:  # empty records are listed, with a warning
        for record, count in zip(batch, n_chunks, strict=True):
            if not count:
                summary.empty_sequences += 1
                log.warning(
                    "%s: record %d (%s) is empty: no chunks",
                    names[record.file - 1],
                    record.number,
                    printable(record.id),
                )


def _publish(staging: Path, outdir: Path, record: Record) -> None:
    """Move the finished outputs into place, the completion marker (prepare.json) last. The new
    files are recorded before they move (the record lists both versions until they are in place);
    the earlier shards and tables are ours (checked by `claim_prepare_outputs`)."""
    new, old = PrepareLayout(staging), PrepareLayout(outdir)
    moves = [(path, old.shards / path.name) for path in sorted(new.shards.iterdir())]
    moves += [
        (new.chunk_frames, old.chunk_frames),
        (new.input_sequences, old.input_sequences),
        (new.summary, old.summary),  # the completion marker, last
    ]
    written = {record.name_of(target): entry_of(source) for source, target in moves}
    record.append(written)
    earlier = prepare_files(old)
    old.summary.unlink(missing_ok=True)
    for path in earlier:
        path.unlink(missing_ok=True)
    if old.shards.is_symlink():
        old.shards.unlink()
    elif old.shards.exists():
        old.shards.rmdir()  # held only shard files (and temporaries, removed when the folder was checked)
    new.shards.rename(old.shards)
    for source, target in moves[-3:]:
        source.replace(target)
    record.settle({**dict.fromkeys(map(record.name_of, earlier)), **written})


def ensure_prepared(
    inputs: Sequence[Path],
    prepared: Path,
    chunk_size: int,
    shard_size: int,
    quiet: bool,
    hashes: list[str] | None = None,
) -> None:
    """Prepare `inputs` into `prepared`, unless a complete prepare of the same parameters and of
    inputs with the same content (`hashes`, computed here when not given) is there."""
    if prepare_is_current(inputs, prepared, chunk_size, shard_size, hashes):
        log.info("prepare: complete, kept (%d shards)", len(read_summary(prepared).shards))
    else:
        prepare(inputs, prepared, chunk_size=chunk_size, shard_size=shard_size, quiet=quiet)


def prepare_is_current(
    inputs: Sequence[Path], prepared: Path, chunk_size: int, shard_size: int, hashes: list[str] | None
) -> bool:
    """Whether `prepared` holds a complete prepare of these parameters and of inputs of this content."""
    summary = read_summary(prepared)
    return (
        summary is not None
        and (summary.chunk_size, summary.shard_size) == (chunk_size, shard_size)
        and summary.input_sha256 == (hashes if hashes is not None else input_hashes(inputs))
    )


def input_hashes(inputs: Sequence[Path], cache: HashCache | None = None) -> list[str]:
    """SHA-256 of each input file's bytes (through `cache` when given)."""
    return [cache.sha256(path) if cache is not None else file_sha256(path) for path in inputs]
