"""What the embedding pool hands its workers (pickled to spawned processes): the models, the optional
scoring, and each shard's files with the outputs they make; and what decides whether those outputs
are complete (the parent skips finished shards with it, the workers check again)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from virnucpro import __version__
from virnucpro.embedding.engine import KernelChoice

BATCH_SETTING = {"dnabert": "batch_size", "esm": "tokens_per_batch"}


@dataclass(frozen=True)
class ModelJob:
    """One model of a job."""

    kind: str
    model_path: str
    compared: dict[str, str]  # what resume compares: model, revision, precision, pooling
    batch_size: int  # DNABERT-S sequences per batch
    tokens_per_batch: int  # ESM-2 padded tokens per batch

    def recorded(self, tf32: str, attention: str) -> dict[str, str]:
        """Everything written into an output's metadata: no paths, command names or times, so
        `embed` and `embed-dna`/`embed-protein`, with any number of workers, write the same bytes.
        Batch settings and the attention kernel are recorded, never compared on resume."""
        batch = self.batch_size if self.kind == "dnabert" else self.tokens_per_batch
        return {
            **self.compared,
            "version": __version__,
            "tf32": tf32,
            BATCH_SETTING[self.kind]: str(batch),
            "attention": attention,
        }


@dataclass(frozen=True)
class ScoringJob:
    """Scoring inside the worker: the classifier (its tensors and config, rebuilt on the worker's
    CPU), its part of the scores' provenance, and whether and how the embeddings are kept."""

    state: dict  # the classifier's state dict (CPU tensors)
    config: object  # its ClassifierConfig
    fields: dict[str, str]  # classifier name, revision, sha256, ... (`classifier_fields`)
    keep_embeddings: bool = False
    embedding_dtype: str = "float32"  # of kept embeddings: float32 or float16


@dataclass(frozen=True)
class EmbedJob:
    """What every worker needs besides its shards and device."""

    models: dict[str, ModelJob]  # by kind
    precision: str
    threads: int
    kernels: KernelChoice = field(default_factory=KernelChoice)
    scoring: ScoringJob | None = None
    # The folders whose writes this command records (`ownership`): workers record theirs there.
    recorded_in: tuple[str, ...] = ()

    @property
    def writes_embeddings(self) -> bool:
        return self.scoring is None or self.scoring.keep_embeddings

    @property
    def embedding_dtype(self) -> str:
        return self.scoring.embedding_dtype if self.scoring is not None else "float32"

    def embedding_expected(self, kind: str, source_sha256: str) -> dict[str, str | None]:
        """The metadata a complete embedding file of `kind` holds for this job (None: key absent)."""
        dtype = self.embedding_dtype
        return {
            **self.models[kind].compared,
            "source_sha256": source_sha256,
            "dtype": None if dtype == "float32" else dtype,
        }

    def scores_expected(self, sources: dict[str, str]) -> dict[str, str]:
        """The metadata a complete scores file holds for this job: the classifier, then both
        models' compared fields and their shards' hashes (as `score_provenance` lays them out)."""
        assert self.scoring is not None
        expected = dict(self.scoring.fields)
        for kind, model in self.models.items():
            expected.update({f"{kind}.{k}": v for k, v in model.compared.items()})
            expected[f"{kind}.source_sha256"] = sources[kind]
        return expected


@dataclass(frozen=True)
class FileTask:
    kind: str
    input: Path
    output: Path  # its embedding file (written unless scoring without keeping embeddings)
    source_sha256: str | None = None  # the input's hash when the parent has it already


@dataclass(frozen=True)
class ShardTask:
    name: str
    files: tuple[FileTask, ...]
    scores: Path | None = None  # the shard's scores file, when the job scores

    def is_done(self, job: EmbedJob, sources: dict[str, str], rows: int | None = None) -> bool:
        """Whether every output of this shard is complete for `job` (footers only)."""
        from virnucpro.files.embedding_files import is_complete

        if self.scores is not None:
            # Score files are small: read whole, so a damaged page is made again rather than reported.
            return is_complete(self.scores, job.scores_expected(sources), rows, verify_pages=True) and (
                not job.writes_embeddings
                or all(
                    is_complete(f.output, job.embedding_expected(f.kind, sources[f.kind]), rows)
                    for f in self.files
                )
            )
        return all(
            is_complete(f.output, job.embedding_expected(f.kind, sources[f.kind]), rows) for f in self.files
        )
