"""The `report` stage: per-frame scores to the final outputs (design section 5).

- `prediction_results.txt` and `prediction_results_highestscore.csv`: the original tool's files,
  byte for byte in its layout (tab-separated; floats as numpy prints float32 scalars; True/False);
- `chunks.tsv`: every chunk, also those without a stop-free frame, with its best scores and call;
- `sequences.tsv`: every input sequence with its chunk counts, viral fraction and call;
- `viral.fa`: the input sequences called viral;
- `report.html` with `score_histogram.png` and `sequence_tracks.png` (see `report_html`);
- `run.json`: parameters, models, versions, counts and timings.

Consensus (the original's): a chunk is viral when max(score_virus) >= max(score_others) over its
frames. A sequence is `virus` when viral chunks / scored chunks >= `min_viral_fraction`, `others`
otherwise, `unscored` when none of its chunks kept a frame (empty sequences too).
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from virnucpro import __version__
from virnucpro.atomic import atomic_open
from virnucpro.defaults import DEFAULT_MIN_VIRAL_FRACTION
from virnucpro.errors import InputError
from virnucpro.output_folder import begin_final_outputs, finish_final_outputs
from virnucpro.paths import (
    CHUNKS_TSV,
    HIGHEST_SCORE,
    PREDICTION_RESULTS,
    RUN_JSON,
    SEQUENCES_TSV,
    VIRAL_FASTA,
    PrepareLayout,
)
from virnucpro.prepare import read_summary
from virnucpro.progress import progress_task
from virnucpro.score_files import read_scores
from virnucpro.sequences import SequenceInputs

log = logging.getLogger("virnucpro")

CHUNK_COLUMNS = (
    "sequence_id",
    "chunk_index",
    "chunk_id",
    "start",
    "end",
    "length",
    "n_frames",
    "frames",
    "best_frame",
    "max_score_others",
    "max_score_virus",
    "call",
    "reason",
)
SEQUENCE_COLUMNS = (
    "sequence_id",
    "record",
    "length",
    "n_chunks",
    "chunks_scored",
    "viral_chunks",
    "viral_fraction",
    "max_score_virus",
    "mean_score_virus",
    "call",
)
NO_FRAME_REASON = "no stop-free frame"
_NAMES_SHOWN = 5


def float32_text(value: float) -> str:
    """A float32 as numpy prints it (`str(np.float32(x))`): what the original wrote."""
    return str(np.float32(value))


@dataclass
class ChunkResult:
    sequence_id: str
    chunk_index: int
    chunk_id: str
    start: int
    end: int
    length: int
    frames: list[str]
    # Per kept frame, in frame order: (others, virus) float32.
    scores: list[tuple[np.float32, np.float32]] = field(default_factory=list)

    @property
    def scored(self) -> bool:
        return bool(self.scores)

    @property
    def max_others(self) -> np.float32:
        return max(s[0] for s in self.scores)

    @property
    def max_virus(self) -> np.float32:
        return max(s[1] for s in self.scores)

    @property
    def viral(self) -> bool:
        return self.scored and self.max_virus >= self.max_others

    @property
    def best_frame(self) -> str:
        """The frame with the highest virus score (the first of equals)."""
        best = max(range(len(self.scores)), key=lambda i: (self.scores[i][1], -i))
        return self.frames[best]

    @property
    def call(self) -> str:
        return "unscored" if not self.scored else ("virus" if self.viral else "others")


@dataclass
class SequenceResult:
    sequence_id: str
    record: int
    length: int
    chunks: list[ChunkResult]
    call: str = "unscored"

    @property
    def chunks_scored(self) -> int:
        return sum(c.scored for c in self.chunks)

    @property
    def viral_chunks(self) -> int:
        return sum(c.viral for c in self.chunks)

    @property
    def viral_fraction(self) -> float | None:
        return self.viral_chunks / self.chunks_scored if self.chunks_scored else None

    @property
    def chunk_virus_scores(self) -> np.ndarray:
        """Each scored chunk's best virus score, in chunk order (float32)."""
        return np.array([c.max_virus for c in self.chunks if c.scored], dtype=np.float32)


@dataclass
class ReportData:
    """Everything the text and HTML outputs are made of."""

    sequences: list[SequenceResult]
    frame_ids: list[str]
    frame_others: np.ndarray  # float32, input order
    frame_virus: np.ndarray
    chunk_size: int
    min_viral_fraction: float
    provenance: dict[str, str]  # classifier and embedding models, from the scores files

    @property
    def chunks(self) -> list[ChunkResult]:
        return [c for s in self.sequences for c in s.chunks]

    def counts(self) -> dict[str, int]:
        chunks = self.chunks
        counts = {
            "sequences": len(self.sequences),
            "sequences_virus": sum(s.call == "virus" for s in self.sequences),
            "sequences_others": sum(s.call == "others" for s in self.sequences),
            "sequences_unscored": sum(s.call == "unscored" for s in self.sequences),
            "chunks": len(chunks),
            "chunks_scored": sum(c.scored for c in chunks),
            "chunks_virus": sum(c.viral for c in chunks),
            "chunks_without_frames": sum(not c.scored for c in chunks),
            "frames": len(self.frame_ids),
        }
        return {key: int(value) for key, value in counts.items()}


def _named(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_NAMES_SHOWN])
    return shown + (f" and {len(ids) - _NAMES_SHOWN} more" if len(ids) > _NAMES_SHOWN else "")


def _read_tsv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None


def _read_all_scores(score_files: Sequence[str | Path]) -> tuple[dict[str, tuple], dict[str, str]]:
    scores: dict[str, tuple[np.float32, np.float32]] = {}
    provenance: dict[str, str] = {}
    for raw in sorted(map(Path, score_files), key=lambda p: p.name):
        try:
            table = read_scores(raw)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{raw}: not a readable scores file ({err})") from None
        duplicates = [i for i in table.ids if i in scores]
        if duplicates:
            raise InputError(f"{raw}: ids already scored in another file: {_named(duplicates)}")
        scores.update(zip(table.ids, zip(table.score_others, table.score_virus, strict=True), strict=True))
        if not provenance:
            provenance = {k: v for k, v in table.metadata.items() if k.split(".")[-1] != "rows"}
    return scores, provenance


def collect(prepared: str | Path, score_files: Sequence[str | Path], min_viral_fraction: float) -> ReportData:
    """Join the prepared chunk table with every frame's scores and apply the consensus."""
    prepared = Path(prepared)
    layout = PrepareLayout(prepared)
    summary = read_summary(prepared)
    if summary is None:
        raise InputError(f"{prepared}: not a finished prepare folder (no readable prepare.json)")
    scores, provenance = _read_all_scores(score_files)
    sequences = [
        SequenceResult(row["sequence_id"], int(row["record"]), int(row["length"]), [])
        for row in _read_tsv(layout.input_sequences)
    ]
    by_id = {s.sequence_id: s for s in sequences}
    frame_ids, frame_others, frame_virus, missing = [], [], [], []
    for row in _read_tsv(layout.chunk_frames):
        frames = row["frames"].split(",") if row["frames"] else []
        chunk = ChunkResult(
            row["sequence_id"],
            int(row["chunk_index"]),
            row["chunk_id"],
            int(row["start"]),
            int(row["end"]),
            int(row["length"]),
            frames,
        )
        for label in frames:
            frame_id = chunk.chunk_id + label
            score = scores.pop(frame_id, None)
            if score is None:
                missing.append(frame_id)
                continue
            chunk.scores.append(score)
            frame_ids.append(frame_id)
            frame_others.append(score[0])
            frame_virus.append(score[1])
        by_id[chunk.sequence_id].chunks.append(chunk)
    if missing:
        raise InputError(f"{prepared}: frames without a score in the scores files: {_named(missing)}")
    if scores:
        raise InputError(f"scores for frames that {prepared} does not hold: {_named(sorted(scores))}")
    for sequence in sequences:
        fraction = sequence.viral_fraction
        if fraction is not None:
            sequence.call = "virus" if fraction >= min_viral_fraction else "others"
    return ReportData(
        sequences=sequences,
        frame_ids=frame_ids,
        frame_others=np.array(frame_others, dtype=np.float32),
        frame_virus=np.array(frame_virus, dtype=np.float32),
        chunk_size=summary.chunk_size,
        min_viral_fraction=min_viral_fraction,
        provenance=provenance,
    )


def write_prediction_results(data: ReportData, path: Path) -> None:
    """The original's per-frame file: argmax of the probabilities, `others` on a tie (torch.max)."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("Sequence_ID\tPrediction\tscore1\tscore2\n")
        for frame_id, others, virus in zip(data.frame_ids, data.frame_others, data.frame_virus, strict=True):
            prediction = "virus" if virus > others else "others"
            out.write(f"{frame_id}\t{prediction}\t{float32_text(others)}\t{float32_text(virus)}\n")


def write_highest_score(data: ReportData, path: Path) -> None:
    """The original's per-chunk consensus: scored chunks, sorted by id as text (pandas groupby)."""
    rows = sorted((c.chunk_id, c.viral) for c in data.chunks if c.scored)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("Modified_ID\tIs_Virus\n")
        out.writelines(f"{chunk_id}\t{viral}\n" for chunk_id, viral in rows)


def write_chunks(data: ReportData, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(CHUNK_COLUMNS) + "\n")
        for c in data.chunks:
            scored = c.scored
            fields = (
                c.sequence_id,
                c.chunk_index,
                c.chunk_id,
                c.start,
                c.end,
                c.length,
                len(c.frames),
                ",".join(c.frames),
                c.best_frame if scored else "",
                float32_text(c.max_others) if scored else "",
                float32_text(c.max_virus) if scored else "",
                c.call,
                "" if scored else NO_FRAME_REASON,
            )
            out.write("\t".join(map(str, fields)) + "\n")


def write_sequences(data: ReportData, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(SEQUENCE_COLUMNS) + "\n")
        for s in data.sequences:
            virus_scores = s.chunk_virus_scores
            scored = virus_scores.size > 0
            fields = (
                s.sequence_id,
                s.record,
                s.length,
                len(s.chunks),
                s.chunks_scored,
                s.viral_chunks,
                f"{s.viral_fraction:.4f}" if scored else "",
                float32_text(virus_scores.max()) if scored else "",
                float32_text(virus_scores.mean(dtype=np.float64)) if scored else "",
                s.call,
            )
            out.write("\t".join(map(str, fields)) + "\n")


def write_viral_fasta(data: ReportData, inputs: Sequence[Path], path: Path) -> None:
    """The input records called viral (inputs read in prepare's order), unwrapped, with their whole
    header line."""
    calls = [(s.sequence_id, s.call) for s in data.sequences]
    source = SequenceInputs(inputs)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        count = 0
        for count, record in enumerate(source.records(), start=1):
            if count > len(calls) or calls[count - 1][0] != record.id:
                raise source.files[record.file - 1].error(
                    "is not the input the prepare folder was made from; give the same --input files, "
                    "in the same order",
                    record.number,
                    record.id,
                )
            if calls[count - 1][1] == "virus":
                out.write(f">{record.header}\n{record.sequence}\n")
        if count != len(calls):
            names = ", ".join(file.name for file in source.files)
            raise InputError(f"{names}: {count} records, but the prepare folder lists {len(calls)}")


def software_versions() -> dict[str, str]:
    import pyarrow
    import torch

    return {
        "virnucpro": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
    }


def _merge(base: dict, extra: Mapping) -> dict:
    """`extra` into `base`; nested dicts are merged key by key (timings of several stages)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def write_run_json(path: Path, content: dict) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as out:
        json.dump(content, out, indent=2, sort_keys=True)
        out.write("\n")


def report(
    inputs: str | Path | Sequence[str | Path],
    prepared: str | Path,
    score_files: Sequence[str | Path],
    outdir: str | Path,
    min_viral_fraction: float = DEFAULT_MIN_VIRAL_FRACTION,
    run_info: Mapping | None = None,
    quiet: bool = False,
) -> ReportData:
    """Write every final output into `outdir`; `run_info` keys are merged into run.json."""
    from virnucpro.report_html import write_html_report

    started = time.monotonic()
    if not 0.0 <= min_viral_fraction <= 1.0:
        raise InputError(f"--min-viral-fraction must be between 0 and 1, not {min_viral_fraction}")
    input_paths = [file.path for file in SequenceInputs(inputs).files]
    outdir = Path(outdir)
    begin_final_outputs(outdir, input_paths, "report")  # run.json goes first, written last
    with progress_task("report", total=4, quiet=quiet, unit="steps") as progress:
        data = collect(prepared, score_files, min_viral_fraction)
        progress.advance()
        write_prediction_results(data, outdir / PREDICTION_RESULTS)
        write_highest_score(data, outdir / HIGHEST_SCORE)
        write_chunks(data, outdir / CHUNKS_TSV)
        write_sequences(data, outdir / SEQUENCES_TSV)
        progress.advance()
        write_viral_fasta(data, input_paths, outdir / VIRAL_FASTA)
        progress.advance()
        write_html_report(data, outdir, title=", ".join(path.name for path in input_paths))
        progress.advance()
    summary = read_summary(prepared)
    content = {
        "command": "report",
        "inputs": summary.inputs if summary else [str(path) for path in input_paths],
        "input_notes": summary.notes if summary else [],
        "parameters": {"chunk_size": data.chunk_size, "min_viral_fraction": min_viral_fraction},
        "models": data.provenance,
        "counts": data.counts(),
        "versions": software_versions(),
    }
    _merge(content, dict(run_info or {}))
    _merge(content, {"timings": {"report_s": round(time.monotonic() - started, 3)}})
    write_run_json(outdir / RUN_JSON, content)
    finish_final_outputs(outdir)
    counts = data.counts()
    log.info(
        "report: %d of %d sequences viral, %d of %d scored chunks viral; outputs in %s",
        counts["sequences_virus"],
        counts["sequences"],
        counts["chunks_virus"],
        counts["chunks_scored"],
        outdir,
    )
    return data
