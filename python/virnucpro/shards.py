"""Shard files: reading them, and their names (defined in `virnucpro.paths`).

A shard is a pair `shard_NNNNN.nucleotide.fa` / `shard_NNNNN.protein.faa` holding the same frame
ids in the same order; later stages name their outputs after the shard (`shard_NNNNN.dnabert.parquet`,
`shard_NNNNN.esm.parquet`, `shard_NNNNN.scores.parquet`) and join by that name.
"""

from __future__ import annotations

from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

from virnucpro.paths import NUCLEOTIDE_SUFFIX, PROTEIN_SUFFIX, SHARDS_DIR, shard_name, shard_of

__all__ = ["NUCLEOTIDE_SUFFIX", "PROTEIN_SUFFIX", "SHARDS_DIR", "read_shard", "shard_name", "shard_of"]


def read_shard(path: str | Path) -> tuple[list[str], list[str]]:
    """Ids and sequences of a shard FASTA file, in file order. Shards are UTF-8 (ids keep the
    input's characters; prepare writes them as it read them)."""
    ids, sequences = [], []
    with open(path, encoding="utf-8") as handle:
        for title, sequence in SimpleFastaParser(handle):
            ids.append(title)
            sequences.append(sequence)
    return ids, sequences
