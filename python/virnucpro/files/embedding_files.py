"""Embedding files: Parquet with `id` (string) and `embedding` (fixed-size list of float32), rows in
shard order, and the provenance that decides whether a file may be reused in the schema metadata.

Written by the embedding stage, read by prediction and by resume checks. Everything downstream
joins by id, never by row position.

Every page carries a CRC checksum and every read verifies it, so a flipped byte inside a file whose
footer is intact is an error when the file is read, never different numbers. The resume check reads
the footer alone (row count, provenance, where each column chunk lies), not the rows: a 10,000-frame
pair of real width is 134 MB. The metadata key `source_sha256` (the SHA-256 of the shard file the
vectors were computed from) lets a rerun recompute the file when its shard changed.

Vectors are stored as float32, or as float16 when asked (kept embeddings, to halve the disk; the
metadata key `dtype` then says `float16`; a float32 file has no such key, as before it existed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from virnucpro.files.atomic import atomic_path

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


# Parquet has no checksum of its footer; ours records one of its own metadata, so a damaged value
# there (a model name, a hash) makes the file incomplete rather than misattributed.
METADATA_CHECKSUM = "metadata_sha256"


def metadata_checksum(metadata: Mapping[str, str]) -> str:
    """SHA-256 of our metadata (`METADATA_CHECKSUM` itself left out), keys sorted (a footer read back
    lists them in another order than they were written)."""
    import hashlib

    text = "".join(f"{k}\t{v}\n" for k, v in sorted(metadata.items()) if k != METADATA_CHECKSUM)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_parquet(table: pa.Table, path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write one of our Parquet files atomically, with the settings above, `metadata` (strings) in
    its schema under our prefix, followed by their checksum."""
    metadata = {k: str(v) for k, v in metadata.items()}
    metadata[METADATA_CHECKSUM] = metadata_checksum(metadata)
    schema_meta = {f"{METADATA_PREFIX}{k}": v for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(schema_meta), tmp, **PARQUET_WRITE_OPTIONS)


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


STORED_DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}


def stored_metadata(metadata: Mapping[str, str], rows: int, dim: int) -> dict[str, str]:
    """What an embedding file records about itself after `metadata`: its width and row count."""
    return {**metadata, "dim": str(dim), "rows": str(rows)}


def write_embeddings(
    path: str | Path,
    ids: Sequence[str],
    vectors: np.ndarray,
    metadata: Mapping[str, str],
    dtype: str = "float32",
) -> None:
    """Write atomically; `metadata` values are strings (model, revision, precision, pooling, ...).
    `dtype` float16 stores the vectors rounded to half precision and records `dtype`."""
    numpy_dtype, arrow_type = STORED_DTYPES[dtype]
    vectors = np.ascontiguousarray(vectors, dtype=numpy_dtype)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but vectors of shape {vectors.shape}")
    dim = vectors.shape[1]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=arrow_type), dim)
    if dtype != "float32":
        metadata = {**metadata, "dtype": dtype}
    table = pa.table({"id": pa.array(list(ids), type=pa.string()), "embedding": embedding})
    write_parquet(table, path, stored_metadata(metadata, len(ids), dim))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The provenance stored in a file, without reading its rows."""
    return _ours(pq.read_schema(path).metadata)


def _ours(raw: Mapping[bytes, bytes] | None) -> dict[str, str]:
    out = {}
    for key, value in (raw or {}).items():
        k = key.decode()
        if k.startswith(METADATA_PREFIX):
            out[k[len(METADATA_PREFIX) :]] = value.decode()
    return out


def read_embeddings(path: str | Path) -> EmbeddingTable:
    """Ids, float32 vectors (float16 files widened) and metadata; every page's checksum verified."""
    table = read_parquet(path)
    metadata = read_metadata(path)
    ids = table.column("id").to_pylist()
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return EmbeddingTable(ids=ids, vectors=vectors.reshape(len(ids), dim), metadata=metadata)


def is_complete(
    path: str | Path,
    expected_metadata: Mapping[str, str | None],
    expected_rows: int | None = None,
    verify_pages: bool = False,
) -> bool:
    """True when `path` is a whole file of ours made with the same provenance (any of our Parquet
    files: embeddings or scores), judged from its footer: it parses, its metadata matches the
    checksum recorded with it, it records the expected metadata (a value None: the key must be
    absent) and row count, and every column chunk it lists lies inside the file. `verify_pages` also reads every page and checks its checksum (for small files:
    the scores).

    A file that is missing, truncated, unreadable, or made with another model, revision, precision,
    pooling or source is not complete: the caller recomputes it rather than mixing results. Without
    `verify_pages`, a data page damaged behind an intact footer passes here and is found by its
    checksum when the file is read (`read_parquet`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        footer = pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    metadata = _ours(footer.metadata)
    if metadata.get(METADATA_CHECKSUM) != metadata_checksum(metadata):
        return False
    for key, value in expected_metadata.items():
        if metadata.get(key) != (None if value is None else str(value)):
            return False
    if str(footer.num_rows) != metadata.get("rows"):
        return False
    for group in range(footer.num_row_groups):
        row_group = footer.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            start = min(o for o in (chunk.dictionary_page_offset, chunk.data_page_offset) if o is not None)
            if start < 4 or start + chunk.total_compressed_size > size:
                return False
    if expected_rows is not None and footer.num_rows != expected_rows:
        return False
    if verify_pages:
        try:
            read_parquet(path)
        except (OSError, pa.ArrowException):
            return False
    return True
