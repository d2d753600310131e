"""Embedding files: Parquet with `id` (string) and `embedding` (fixed-size list of float32), rows in
shard order, and the provenance that decides whether a file may be reused in the schema metadata.

Written by the embedding stage, read by prediction and by resume checks. Everything downstream
joins by id, never by row position.

Every page carries a CRC checksum and every read verifies it, so a flipped byte inside a file whose
footer is intact is an error, never different numbers; the resume check reads the rows back. The
metadata key `source_sha256` (the SHA-256 of the shard file the vectors were computed from) lets a
rerun recompute the file when its shard changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from virnucpro.atomic import atomic_path

METADATA_PREFIX = "virnucpro."
# No compression, dictionary or statistics: float vectors do not compress, and this keeps the bytes
# a pure function of the values (workers 1 vs N give identical files). Page checksums are a pure
# function of the page bytes, so they keep that property.
PARQUET_WRITE_OPTIONS = {
    "compression": "none",
    "use_dictionary": False,
    "write_statistics": False,
    "write_page_checksum": True,
}


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write one of our Parquet files atomically, with the settings above."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_WRITE_OPTIONS)


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read one of our Parquet files, verifying every page's checksum."""
    return pq.read_table(path, columns=columns, page_checksum_verification=True)


@dataclass(frozen=True)
class EmbeddingTable:
    ids: list[str]
    vectors: np.ndarray  # float32, shape (rows, dim)
    metadata: dict[str, str]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def write_embeddings(
    path: str | Path, ids: Sequence[str], vectors: np.ndarray, metadata: Mapping[str, str]
) -> None:
    """Write atomically; `metadata` values are strings (model, revision, precision, pooling, ...)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but vectors of shape {vectors.shape}")
    dim = vectors.shape[1]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    schema_meta = {f"{METADATA_PREFIX}{k}": str(v) for k, v in metadata.items()}
    schema_meta[f"{METADATA_PREFIX}dim"] = str(dim)
    schema_meta[f"{METADATA_PREFIX}rows"] = str(len(ids))
    table = pa.table({"id": pa.array(list(ids), type=pa.string()), "embedding": embedding})
    write_parquet(table.replace_schema_metadata(schema_meta), path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The provenance stored in a file, without reading its rows."""
    raw = pq.read_schema(path).metadata or {}
    out = {}
    for key, value in raw.items():
        k = key.decode()
        if k.startswith(METADATA_PREFIX):
            out[k[len(METADATA_PREFIX) :]] = value.decode()
    return out


def read_embeddings(path: str | Path) -> EmbeddingTable:
    table = read_parquet(path)
    metadata = read_metadata(path)
    ids = table.column("id").to_pylist()
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return EmbeddingTable(ids=ids, vectors=vectors.reshape(len(ids), dim), metadata=metadata)


def is_complete(
    path: str | Path, expected_metadata: Mapping[str, str], expected_rows: int | None = None
) -> bool:
    """True when `path` reads back whole (every page's checksum verified) and was made with the
    same provenance (any of our Parquet files: embeddings or scores).

    A file that is missing, truncated, corrupt, unreadable, or made with another model, revision,
    precision, pooling or source is not complete: the caller recomputes it rather than mixing
    results. The provenance is compared first, so a stale file costs no read of its rows.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        metadata = read_metadata(path)
        if any(metadata.get(k) != str(v) for k, v in expected_metadata.items()):
            return False
        rows = read_parquet(path).num_rows
    except (OSError, pa.ArrowException):
        return False
    if str(rows) != metadata.get("rows"):
        return False
    return expected_rows is None or rows == expected_rows
