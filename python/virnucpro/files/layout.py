"""Every file the pipeline writes, named in one place.

A stage asks this module for a path instead of spelling a file name, so one name means one table
and the checks that protect user data (what may be overwritten, what `--force` removes, which
temporary files are ours) know every output.

Layout (`virnucpro run INPUT --outdir DIR`; the stage commands write the same names into the folder
they are given):

    DIR/prediction_results.txt ... run.json    final outputs (FINAL_OUTPUTS; run.json written last)
    DIR/.virnucpro-outputs                     marks them as ours while run.json is missing
    CALDIR/calibration.json, .tsv, _reliability.png   `virnucpro calibrate --outdir CALDIR`
    DIR/work/parameters.json                   what decides the results; marks DIR/work as ours
    DIR/work/hashes.tsv                        file hashes by size, mtime and inode (saves rehashing)
    DIR/work/request.sha256                    what the final outputs follow from (a rerun with the same does nothing)
    DIR/work/prepare/chunk_frames.tsv          prepare: every chunk and the frames it kept
    DIR/work/prepare/input_sequences.tsv       prepare: every input sequence
    DIR/work/prepare/prepare.json              prepare: parameters, inputs and counts (written last)
    DIR/work/prepare/shards/shard_NNNNN.nucleotide.fa, .protein.faa
    DIR/work/embeddings/shard_NNNNN.dnabert.parquet, .esm.parquet   (only with --keep-embeddings)
    DIR/work/scores/shard_NNNNN.scores.parquet

Kept free of imports beyond the standard library: the CLI, Nextflow tasks and tests read it.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

# --- Inputs ---
STDIN = "-"  # an input path that means standard input


def is_stream(path: str | Path) -> bool:
    """`-` (standard input), a pipe, a socket or a character device: readable once, from the start."""
    if str(path) == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def display_name(path: str | Path) -> str:
    return "standard input" if str(path) == STDIN else str(path)


# --- Names shared by every stage. ---
TMP_PREFIX = ".tmp-"  # + final name + "." + writer pid + "." + random: an unfinished atomic write

# --- prepare ---
CHUNK_FRAMES_TSV = "chunk_frames.tsv"
INPUT_SEQUENCES_TSV = "input_sequences.tsv"
PREPARE_JSON = "prepare.json"
SHARDS_DIR = "shards"
NUCLEOTIDE_SUFFIX = ".nucleotide.fa"
PROTEIN_SUFFIX = ".protein.faa"
PREPARE_STAGING_PREFIX = ".prepare-"  # + writer pid + "-" + random: prepare's staging folder
PREPARE_OUTPUTS = (SHARDS_DIR, CHUNK_FRAMES_TSV, INPUT_SEQUENCES_TSV, PREPARE_JSON)

# --- embed-dna, embed-protein, predict ---
DNABERT_SUFFIX = ".dnabert.parquet"
ESM_SUFFIX = ".esm.parquet"
EMBEDDING_SUFFIXES = {"dnabert": DNABERT_SUFFIX, "esm": ESM_SUFFIX}
SCORES_SUFFIX = ".scores.parquet"

# --- report: the final outputs at the top of --outdir (`run` and `report` write them all) ---
PREDICTION_RESULTS = "prediction_results.txt"
HIGHEST_SCORE = "prediction_results_highestscore.csv"
CHUNKS_TSV = "chunks.tsv"
SEQUENCES_TSV = "sequences.tsv"
VIRAL_FASTA = "viral.fa"
REPORT_HTML = "report.html"
HISTOGRAM_PNG = "score_histogram.png"
TRACKS_PNG = "sequence_tracks.png"
VIRAL_REGIONS_TSV = "viral_regions.tsv"
VIRAL_REGIONS_BED = "viral_regions.bed"
VIRAL_REGIONS_FASTA = "viral_regions.fa"
RUN_JSON = "run.json"  # the completion marker: removed first, written last
# Written into --outdir before the first final output and removed once run.json is written (which
# marks them from then on): the final-output names there are ours, so a rerun may replace them and
# --force may remove them (a user's own viral.fa is never touched).
OUTDIR_MARKER = ".virnucpro-outputs"
FINAL_OUTPUTS = (
    PREDICTION_RESULTS,
    HIGHEST_SCORE,
    CHUNKS_TSV,
    SEQUENCES_TSV,
    VIRAL_FASTA,
    VIRAL_REGIONS_TSV,
    VIRAL_REGIONS_BED,
    VIRAL_REGIONS_FASTA,
    REPORT_HTML,
    HISTOGRAM_PNG,
    TRACKS_PNG,
    RUN_JSON,
)

# --- calibrate: its --outdir ---
CALIBRATION_JSON = "calibration.json"  # what `run`/`report --calibration` read
CALIBRATION_TSV = "calibration.tsv"
RELIABILITY_PNG = "calibration_reliability.png"
CALIBRATION_OUTPUTS = (CALIBRATION_TSV, RELIABILITY_PNG, CALIBRATION_JSON)  # written in this order

# --- run: intermediates under --outdir ---
WORK_DIR = "work"
PARAMETERS_JSON = "parameters.json"
PREPARE_DIR = "prepare"
EMBEDDINGS_DIR = "embeddings"
SCORES_DIR = "scores"
HASHES_TSV = "hashes.tsv"  # SHA-256 of inputs and shards by size, mtime and inode (checksums.HashCache)
# The fingerprint of a finished run's request and intermediates (file sizes and mtimes among them), so
# kept out of run.json: two runs of the same input still give byte-identical outputs.
REQUEST_SHA256 = "request.sha256"
WORK_OUTPUTS = (PARAMETERS_JSON, PREPARE_DIR, EMBEDDINGS_DIR, SCORES_DIR, HASHES_TSV, REQUEST_SHA256)

_SHARD_NAME = re.compile(r"^(shard_\d{5,})\.")


def shard_name(number: int) -> str:
    """`shard_00007` for shard 7 (numbered from 1)."""
    return f"shard_{number:05d}"


def shard_of(path: str | Path) -> str:
    """`shard_00007` for any file named after shard 7 (`shard_00007.esm.parquet`, ...)."""
    match = _SHARD_NAME.match(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not named like a shard file (shard_NNNNN.*)")
    return match.group(1)


def embedding_file(folder: Path, shard: str, kind: str) -> Path:
    """`folder/shard_NNNNN.dnabert.parquet` (kind `dnabert`) or `.esm.parquet` (kind `esm`)."""
    return Path(folder) / f"{shard}{EMBEDDING_SUFFIXES[kind]}"


def scores_file(folder: Path, shard: str) -> Path:
    return Path(folder) / f"{shard}{SCORES_SUFFIX}"


@dataclass(frozen=True)
class PrepareLayout:
    """The files of one prepare output folder."""

    folder: Path

    @property
    def chunk_frames(self) -> Path:
        return self.folder / CHUNK_FRAMES_TSV

    @property
    def input_sequences(self) -> Path:
        return self.folder / INPUT_SEQUENCES_TSV

    @property
    def summary(self) -> Path:
        return self.folder / PREPARE_JSON

    @property
    def shards(self) -> Path:
        return self.folder / SHARDS_DIR

    def shard_files(self, number: int) -> tuple[Path, Path]:
        """The nucleotide and protein file of shard `number` (from 1)."""
        name = shard_name(number)
        return self.shards / f"{name}{NUCLEOTIDE_SUFFIX}", self.shards / f"{name}{PROTEIN_SUFFIX}"

    def nucleotide_shards(self) -> list[Path]:
        return sorted(self.shards.glob(f"shard_*{NUCLEOTIDE_SUFFIX}"))

    def protein_shards(self) -> list[Path]:
        return sorted(self.shards.glob(f"shard_*{PROTEIN_SUFFIX}"))


@dataclass(frozen=True)
class RunLayout:
    """The files of one `virnucpro run --outdir` folder."""

    outdir: Path

    @property
    def work(self) -> Path:
        return self.outdir / WORK_DIR

    @property
    def parameters(self) -> Path:
        return self.work / PARAMETERS_JSON

    @property
    def prepare(self) -> PrepareLayout:
        return PrepareLayout(self.work / PREPARE_DIR)

    @property
    def embeddings(self) -> Path:
        return self.work / EMBEDDINGS_DIR

    @property
    def scores(self) -> Path:
        return self.work / SCORES_DIR

    @property
    def hashes(self) -> Path:
        return self.work / HASHES_TSV

    @property
    def request_fingerprint(self) -> Path:
        return self.work / REQUEST_SHA256

    @property
    def run_json(self) -> Path:
        return self.outdir / RUN_JSON

    def final_outputs(self) -> list[Path]:
        return [self.outdir / name for name in FINAL_OUTPUTS]

    def intermediate_folders(self) -> list[Path]:
        """The folders under work/ that stages write into (with temporaries of interrupted writes)."""
        prepare = self.prepare
        return [self.work, prepare.folder, prepare.shards, self.embeddings, self.scores]
