"""Score files: Parquet with `id` (string), `score_others` and `score_virus` (float32 softmax
probabilities, class 0 and class 1), one row per frame in shard order, and the provenance in the
schema metadata: the classifier (name, revision, sha256 of its weights), both embedding files' own
metadata (prefixed `dnabert.` and `esm.`) and the SHA-256 of both embedding files' bytes
(`dnabert_sha256`, `esm_sha256`), so a score can be traced to every model and file behind it and a
rerun recomputes it when either embedding file changed.

Written by `virnucpro predict`, read by `virnucpro report`. Resume checks use
`embedding_files.is_complete`, which reads any of our Parquet files' row count and provenance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from virnucpro.errors import InputError
from virnucpro.files.embedding_files import read_metadata, read_parquet, write_parquet
from virnucpro.files.layout import SCORES_SUFFIX

__all__ = ["SCORES_SUFFIX", "ScoreTable", "read_scores", "score_provenance", "write_scores"]


KINDS = ("dnabert", "esm")


def score_provenance(
    classifier: Mapping[str, str],
    embeddings: Mapping[str, Mapping[str, str]],
    hashes: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A scores file's metadata: the classifier's fields, then per model (`dnabert`, `esm`) the
    embedding metadata (what the embedding file records, or would have) and, where the scores were
    made from an embedding file, the SHA-256 of its bytes. Scored inside the embedding worker
    from vectors in memory, there is no file and so no hash; everything else is the same."""
    metadata = dict(classifier)
    for kind in KINDS:
        metadata.update({f"{kind}.{k}": v for k, v in embeddings[kind].items()})
        if hashes and kind in hashes:
            metadata[f"{kind}_sha256"] = hashes[kind]
    return metadata


@dataclass(frozen=True)
class ScoreTable:
    ids: list[str]
    score_others: np.ndarray  # float32, P(class 0)
    score_virus: np.ndarray  # float32, P(class 1)
    metadata: dict[str, str]


def write_scores(
    path: str | Path,
    ids: Sequence[str],
    score_others: np.ndarray,
    score_virus: np.ndarray,
    metadata: Mapping[str, str],
) -> None:
    """Write atomically; `metadata` values are strings."""
    others = np.ascontiguousarray(score_others, dtype=np.float32)
    virus = np.ascontiguousarray(score_virus, dtype=np.float32)
    if not (len(ids) == others.shape[0] == virus.shape[0]) or others.ndim != 1 or virus.ndim != 1:
        raise ValueError(f"{len(ids)} ids but scores of shapes {others.shape} and {virus.shape}")
    table = pa.table(
        {
            "id": pa.array(list(ids), type=pa.string()),
            "score_others": pa.array(others, type=pa.float32()),
            "score_virus": pa.array(virus, type=pa.float32()),
        }
    )
    # Same settings as the embedding files: checksummed pages and metadata, deterministic bytes.
    write_parquet(table, path, {**metadata, "rows": str(len(ids))})


def read_scores(path: str | Path) -> ScoreTable:
    table = read_parquet(path, columns=["id", "score_others", "score_virus"])
    return ScoreTable(
        ids=table.column("id").to_pylist(),
        score_others=table.column("score_others").to_numpy().astype(np.float32, copy=False),
        score_virus=table.column("score_virus").to_numpy().astype(np.float32, copy=False),
        metadata=read_metadata(path),
    )


def score_files_in(paths: list[Path]) -> list[Path]:
    """The given files, with each folder replaced by the score files it holds."""
    if not paths:
        raise InputError(f"--scores: give the shard_NNNNN{SCORES_SUFFIX} files, or the folder holding them")
    files = []
    for path in paths:
        # A folder may hold none: an input without any stop-free frame has nothing to score.
        files.extend(sorted(path.glob(f"shard_*{SCORES_SUFFIX}")) if path.is_dir() else [path])
    return files
