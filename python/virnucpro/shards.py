"""Shard files: naming and reading.

A shard is a pair `shard_NNNNN.nucleotide.fa` / `shard_NNNNN.protein.faa` holding the same frame
ids in the same order; later stages name their outputs after the shard (`shard_NNNNN.dnabert.parquet`,
`shard_NNNNN.esm.parquet`, `shard_NNNNN.scores.parquet`) and join by that name.
"""

from __future__ import annotations

import re
from pathlib import Path

from virnucpro.errors import InputError

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
    """Ids and sequences of a shard FASTA file, in file order.

    Shards are the pipeline's own `>id\nseq\n` files, UTF-8 (ids keep the input's characters), so
    they are read whole and split rather than parsed line by line: no Biopython, which embedding
    workers do not need. Wrapped sequences and CRLF line ends are accepted; text before the first
    `>` or a file that is not UTF-8 is an `InputError` naming the file."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not a shard file (not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start})"
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text:
        return [], []
    if not text.startswith(">"):
        raise InputError(f"{path}: not a shard file (text before the first '>' header)")
    ids, sequences = [], []
    for record in text[1:].split("\n>"):
        header, _, body = record.partition("\n")
        ids.append(header.rstrip())
        sequences.append(body.replace("\n", ""))
    return ids, sequences
