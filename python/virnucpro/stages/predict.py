"""The `predict` stage: a shard's two embedding files, joined by id, scored by the classifier.

Feature = DNABERT-S vector then ESM-2 vector (the order the published classifiers were trained on).
Rows keep the DNABERT-S file's order (shard order); the ESM-2 rows are matched by id, never by
position, and a missing or duplicated id stops the stage with the ids named.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from virnucpro.errors import InputError, abbreviated_ids
from virnucpro.files.checksums import file_sha256
from virnucpro.files.embedding_files import EmbeddingTable, is_complete, read_embeddings, read_metadata
from virnucpro.files.layout import DNABERT_SUFFIX, ESM_SUFFIX, scores_file, shard_of
from virnucpro.files.outdir import claim_stage_outputs
from virnucpro.files.score_files import score_provenance, write_scores
from virnucpro.method.classifier import score_features
from virnucpro.models.classifier_weights import LoadedClassifier, classifier_fields, load_classifier
from virnucpro.progress import progress_task

log = logging.getLogger("virnucpro")


def pair_embedding_files(paths: Sequence[str | Path]) -> list[tuple[str, Path, Path]]:
    """(shard, dnabert file, esm file) for every shard, in shard order; both files are required."""
    found: dict[str, dict[str, Path]] = {}
    for raw in paths:
        path = Path(raw)
        kind = next(
            (
                k
                for k, suffix in (("dnabert", DNABERT_SUFFIX), ("esm", ESM_SUFFIX))
                if path.name.endswith(suffix)
            ),
            None,
        )
        try:
            shard = shard_of(path)
        except ValueError:
            shard = None
        if kind is None or shard is None:
            raise InputError(
                f"{path}: not an embedding file "
                f"(expected shard_NNNNN{DNABERT_SUFFIX} or shard_NNNNN{ESM_SUFFIX})"
            )
        previous = found.setdefault(shard, {}).setdefault(kind, path)
        if previous != path:
            raise InputError(f"{shard}: two {kind} embedding files given: {previous} and {path}")
    pairs = []
    for shard in sorted(found):
        files = found[shard]
        for kind, suffix in (("dnabert", DNABERT_SUFFIX), ("esm", ESM_SUFFIX)):
            if kind not in files:
                raise InputError(
                    f"{shard}: no {shard}{suffix} given to pair with {next(iter(files.values()))}"
                )
        pairs.append((shard, files["dnabert"], files["esm"]))
    return pairs


def join_features(
    dnabert: EmbeddingTable, esm: EmbeddingTable, dnabert_path: Path, esm_path: Path
) -> tuple[list[str], np.ndarray]:
    """Ids in the DNABERT-S file's order and the [n, dnabert_dim + esm_dim] float32 features."""
    for table, path in ((dnabert, dnabert_path), (esm, esm_path)):
        duplicates = sorted(k for k, n in Counter(table.ids).items() if n > 1)
        if duplicates:
            raise InputError(f"{path}: duplicate ids {abbreviated_ids(duplicates)}")
    esm_row = {frame_id: row for row, frame_id in enumerate(esm.ids)}
    missing_in_esm = [i for i in dnabert.ids if i not in esm_row]
    if missing_in_esm:
        raise InputError(f"{esm_path}: ids of {dnabert_path.name} missing: {abbreviated_ids(missing_in_esm)}")
    if len(esm.ids) != len(dnabert.ids):
        dnabert_ids = set(dnabert.ids)
        extra = [i for i in esm.ids if i not in dnabert_ids]
        raise InputError(f"{dnabert_path}: ids of {esm_path.name} missing: {abbreviated_ids(extra)}")
    order = np.fromiter((esm_row[i] for i in dnabert.ids), dtype=np.int64, count=len(dnabert.ids))
    dnabert_vectors = dnabert.vectors.reshape(len(dnabert.ids), -1)
    esm_vectors = esm.vectors.reshape(len(esm.ids), -1)[order]
    return list(dnabert.ids), np.concatenate([dnabert_vectors, esm_vectors], axis=1).astype(np.float32)


def scores_metadata(classifier: LoadedClassifier, dnabert_path: Path, esm_path: Path) -> dict[str, str]:
    """Provenance of a scores file made from two embedding files: their own metadata and the
    SHA-256 of their bytes (a rerun recomputes the scores when either file changed)."""
    embeddings, hashes = {}, {}
    for kind, path in (("dnabert", dnabert_path), ("esm", esm_path)):
        try:
            embeddings[kind] = read_metadata(path)
            hashes[kind] = file_sha256(path)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: not a readable embedding file ({err})") from None
    return score_provenance(classifier_fields(classifier), embeddings, hashes)


def _read_embedding_file(path: Path) -> EmbeddingTable:
    try:
        return read_embeddings(path)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(
            f"{path}: not a readable embedding file, or corrupt ({err}); recompute it (delete it and "
            "rerun the embedding stage)"
        ) from None


def _check_widths(
    shard: str, dnabert: EmbeddingTable, esm: EmbeddingTable, classifier: LoadedClassifier
) -> None:
    config = classifier.config
    width = dnabert.dim + esm.dim
    expected = [(config.dnabert_dim, dnabert.dim, "DNABERT-S"), (config.esm_dim, esm.dim, "ESM-2")]
    wrong = [f"{label} {got} (expected {want})" for want, got, label in expected if want not in (None, got)]
    if width != config.input_dim or wrong:
        raise InputError(
            f"{shard}: embeddings of {dnabert.dim} (DNABERT-S) + {esm.dim} (ESM-2) = {width} values, "
            f"but the classifier {classifier.name} takes {config.input_dim}"
            + (f": {', '.join(wrong)}" if wrong else "")
            + "; use the embedding models the classifier was trained with"
        )


def predict_shard(
    shard: str, dnabert_path: Path, esm_path: Path, classifier: LoadedClassifier, outdir: Path
) -> Path:
    """Score one shard into `outdir/shard_NNNNN.scores.parquet`, unless a complete file exists."""
    out = scores_file(outdir, shard)
    metadata = scores_metadata(classifier, dnabert_path, esm_path)
    try:
        rows = int(metadata["dnabert.rows"])
    except (KeyError, ValueError):
        raise InputError(f"{dnabert_path}: not an embedding file of virnucpro (no row count)") from None
    if is_complete(out, metadata, rows, verify_pages=True):
        log.debug("%s: complete, kept", out)
        return out
    dnabert, esm = _read_embedding_file(dnabert_path), _read_embedding_file(esm_path)
    _check_widths(shard, dnabert, esm, classifier)
    ids, features = join_features(dnabert, esm, dnabert_path, esm_path)
    score_others, score_virus = score_features(classifier.model, features)
    write_scores(out, ids, score_others, score_virus, metadata)
    return out


def predict_files(
    embedding_files: Sequence[str | Path],
    classifier: str | Path | LoadedClassifier,
    outdir: str | Path,
    revision: str | None = None,
    quiet: bool = False,
) -> list[Path]:
    """Score every shard whose two embedding files are given; returns the scores files in shard order."""
    pairs = pair_embedding_files(embedding_files)
    loaded = classifier if isinstance(classifier, LoadedClassifier) else load_classifier(classifier, revision)
    outdir = Path(outdir)
    claim_stage_outputs(
        outdir, embedding_files, [scores_file(outdir, shard) for shard, _, _ in pairs], "virnucpro predict"
    )
    outputs = []
    with progress_task("predict", total=len(pairs), quiet=quiet, unit="shards") as progress:
        for shard, dnabert_path, esm_path in pairs:
            outputs.append(predict_shard(shard, dnabert_path, esm_path, loaded, outdir))
            progress.advance()
    log.info("predict: %d shards scored with %s", len(outputs), loaded.name)
    return outputs
