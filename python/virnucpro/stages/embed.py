"""The `embed` stage: shard files to embeddings (and, with a classifier, to scores) in one worker
pool, for `embed-dna`, `embed-protein`, `embed`, `run` and `train`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from virnucpro.defaults import DEFAULT_EMBEDDING_DTYPE
from virnucpro.embedding.options import EmbeddingOptions
from virnucpro.embedding.pool import Scoring, embed_files, embed_shards
from virnucpro.errors import InputError
from virnucpro.files.layout import PrepareLayout
from virnucpro.files.outdir import no_trace_if_refused


def embed_with_one_model(
    kind: str, shards: Sequence[Path], outdir: Path, options: EmbeddingOptions, quiet: bool
) -> list[Path]:
    """`embed-dna` (kind "dnabert") or `embed-protein` (kind "esm"): one file per shard."""
    with no_trace_if_refused(outdir):
        return embed_files(kind, shards, outdir, options, quiet=quiet)


def embed_with_both_models(
    shards: Sequence[Path],
    outdir: Path,
    options: EmbeddingOptions,
    classifier: str | None,
    classifier_revision: str | None,
    quiet: bool,
) -> None:
    """`embed`: both models resident in each worker; with `classifier`, the shards are scored there
    too, and the embeddings written only with `options.keep_embeddings`."""
    with no_trace_if_refused(outdir):
        if classifier is None and (
            options.keep_embeddings or options.embedding_dtype != DEFAULT_EMBEDDING_DTYPE
        ):
            raise InputError(
                "--keep-embeddings and --embedding-dtype go with --classifier (embeddings are kept without it)"
            )
        scoring = None
        if classifier is not None:
            from virnucpro.models.classifier_weights import load_classifier

            scoring = Scoring(
                load_classifier(classifier, classifier_revision),
                outdir,
                options.keep_embeddings,
                options.embedding_dtype,
            )
        embed_shards(shards, outdir, options, quiet=quiet, scoring=scoring)


def embed_prepared(
    prepared: Path, outdir: Path, options: EmbeddingOptions, quiet: bool, scoring=None, hashes=None
) -> tuple[list[Path], list[Path]]:
    """Both embeddings of every shard of a prepare folder, in one worker pool holding both models
    (complete files are kept); with `scoring` (`embedding.pool.Scoring`), scored there too."""
    layout = PrepareLayout(prepared)
    nucleotide, protein = layout.nucleotide_shards(), layout.protein_shards()
    if not nucleotide:
        if scoring is not None:
            scoring.outputs = []
        return [], []
    return embed_shards([*nucleotide, *protein], outdir, options, quiet=quiet, scoring=scoring, hashes=hashes)
