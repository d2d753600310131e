"""Shard files: naming and reading.

A shard is a pair `shard_NNNNN.nucleotide.fa` / `shard_NNNNN.protein.faa` holding the same frame
ids in the same order; later stages name their outputs after the shard (`shard_NNNNN.dnabert.parquet`,
`shard_NNNNN.esm.parquet`, `shard_NNNNN.scores.parquet`) and join by that name.
"""

from __future__ import annotations

import re
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

SHARDS_DIR = "shards"
NUCLEOTIDE_SUFFIX = ".nucleotide.fa"
PROTEIN_SUFFIX = ".protein.faa"
_SHARD_NAME = re.compile(r"^(shard_\d{5,})\.")


def shard_name(number: int) -> str:
    return f"shard_{number:05d}"


def shard_paths(folder: Path, number: int) -> tuple[Path, Path]:
    """The nucleotide and protein file of shard `number` (from 1) in `folder`."""
    name = shard_name(number)
    return folder / f"{name}{NUCLEOTIDE_SUFFIX}", folder / f"{name}{PROTEIN_SUFFIX}"


def shard_of(path: str | Path) -> str:
    """`shard_00007` for any file named after shard 7 (`shard_00007.esm.parquet`, ...)."""
    match = _SHARD_NAME.match(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not named like a shard file (shard_NNNNN.*)")
    return match.group(1)


def read_shard(path: str | Path) -> tuple[list[str], list[str]]:
    """Ids and sequences of a shard FASTA file, in file order."""
    ids, sequences = [], []
    with open(path, encoding="ascii") as handle:
        for title, sequence in SimpleFastaParser(handle):
            ids.append(title)
            sequences.append(sequence)
    return ids, sequences
