"""Shard files: reading them, and their names (defined in `virnucpro.files.layout`).

A shard is a pair `shard_NNNNN.nucleotide.fa` / `shard_NNNNN.protein.faa` holding the same frame
ids in the same order; later stages name their outputs after the shard (`shard_NNNNN.dnabert.parquet`,
`shard_NNNNN.esm.parquet`, `shard_NNNNN.scores.parquet`) and join by that name.
"""

from __future__ import annotations

from pathlib import Path

from virnucpro.errors import InputError
from virnucpro.files.layout import NUCLEOTIDE_SUFFIX, PROTEIN_SUFFIX, SHARDS_DIR, shard_name, shard_of

__all__ = ["NUCLEOTIDE_SUFFIX", "PROTEIN_SUFFIX", "SHARDS_DIR", "read_shard", "shard_name", "shard_of"]


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
