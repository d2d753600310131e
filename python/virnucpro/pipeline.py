"""`virnucpro run`: every stage in one process tree, resumable.

Layout under `--outdir DIR`: intermediates in `DIR/work/` (`prepare/`, `embeddings/`, `scores/`),
final outputs at the top level, and `DIR/work/parameters.json`, the parameters that decide the
results (input file, chunk and shard size, each model and its resolved revision, precision, the
classifier's SHA-256). A rerun with the same parameters resumes: every stage keeps its complete
outputs (prepare.json, complete embedding and scores files) and computes only what is missing, so
after a kill at any point the same command finishes the work and writes the same outputs. A rerun
with a changed parameter is refused with a message naming it, rather than mixing results;
`--force` starts over.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from virnucpro.atomic import atomic_open
from virnucpro.classifier import load_classifier
from virnucpro.defaults import (
    CHUNK_SIZES,
    DEFAULT_DNABERT_MODEL,
    DEFAULT_ESM_MODEL,
    DEFAULT_MIN_VIRAL_FRACTION,
    DEFAULT_SHARD_SIZE,
    PUBLISHED_CLASSIFIERS,
)
from virnucpro.errors import InputError
from virnucpro.predict import predict_files
from virnucpro.prepare import prepare, read_summary
from virnucpro.report import RUN_JSON, ReportData, report
from virnucpro.report_html import HISTOGRAM_PNG, REPORT_HTML, TRACKS_PNG
from virnucpro.shards import NUCLEOTIDE_SUFFIX, PROTEIN_SUFFIX, SHARDS_DIR

log = logging.getLogger("virnucpro")

WORK_DIR = "work"
PARAMETERS_JSON = "parameters.json"
FINAL_OUTPUTS = (
    "prediction_results.txt",
    "prediction_results_highestscore.csv",
    "chunks.tsv",
    "sequences.tsv",
    "viral.fa",
    REPORT_HTML,
    HISTOGRAM_PNG,
    TRACKS_PNG,
    RUN_JSON,
)
# The command-line option that sets each recorded parameter, for the refusal message.
PARAMETER_OPTIONS = {
    "input": "INPUT",
    "input_size": "INPUT (its size changed)",
    "input_mtime_ns": "INPUT (modified since)",
    "chunk_size": "--chunk-size",
    "shard_size": "--shard-size",
    "dnabert_model": "--dnabert-model",
    "dnabert_revision": "--dnabert-model/--dnabert-revision (resolved revision)",
    "esm_model": "--esm-model",
    "esm_revision": "--esm-model/--esm-revision (resolved revision)",
    "precision": "--precision",
    "classifier": "--classifier",
    "classifier_sha256": "--classifier/--classifier-revision (its weights)",
}


@dataclass(frozen=True)
class EmbeddingOptions:
    """How sequences are prepared and embedded (shared by `run` and `train`)."""

    chunk_size: int = 500
    dnabert_model: str = DEFAULT_DNABERT_MODEL
    dnabert_revision: str | None = None
    esm_model: str = DEFAULT_ESM_MODEL
    esm_revision: str | None = None
    devices: str = "auto"
    workers: int = 1
    precision: str = "fp32"
    batch_size: int = 256
    tokens_per_batch: int | None = None


def default_classifier(chunk_size: int) -> str:
    if chunk_size not in PUBLISHED_CLASSIFIERS:
        raise InputError(f"--chunk-size must be 300 or 500 (the published classifiers), not {chunk_size}")
    return PUBLISHED_CLASSIFIERS[chunk_size]


def embed_prepared(
    prepared: Path, outdir: Path, options: EmbeddingOptions, quiet: bool
) -> tuple[list[Path], list[Path]]:
    """Both embeddings of every shard of a prepare folder, in one worker pool holding both models
    (complete files are kept)."""
    from virnucpro.embedding.pool import embed_shards

    shards = prepared / SHARDS_DIR
    nucleotide = sorted(shards.glob(f"shard_*{NUCLEOTIDE_SUFFIX}"))
    protein = sorted(shards.glob(f"shard_*{PROTEIN_SUFFIX}"))
    if not nucleotide:
        return [], []
    return embed_shards(
        [*nucleotide, *protein],
        outdir,
        options.dnabert_model,
        options.esm_model,
        dnabert_revision=options.dnabert_revision,
        esm_revision=options.esm_revision,
        devices=options.devices,
        workers=options.workers,
        precision=options.precision,
        batch_size=options.batch_size,
        tokens_per_batch=options.tokens_per_batch,
        quiet=quiet,
    )


def ensure_prepared(input_path: Path, prepared: Path, chunk_size: int, shard_size: int, quiet: bool) -> None:
    summary = read_summary(prepared)
    if summary is None or (summary.chunk_size, summary.shard_size) != (chunk_size, shard_size):
        prepare(input_path, prepared, chunk_size=chunk_size, shard_size=shard_size, quiet=quiet)
    else:
        log.info("prepare: complete, kept (%d shards)", len(summary.shards))


def check_parameters(record: Path, parameters: dict) -> None:
    """Write the record on the first run; refuse a rerun whose parameters differ from it."""
    try:
        earlier = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        earlier = None
    except (OSError, ValueError):
        earlier = None  # a torn record cannot exist (atomic writes); an unreadable one is replaced
    if earlier is not None:
        changed = [key for key in parameters if earlier.get(key) != parameters[key]]
        if changed:
            details = "; ".join(
                f"{PARAMETER_OPTIONS.get(k, k)} was {earlier.get(k)!r}, now {parameters[k]!r}"
                for k in changed
            )
            raise InputError(
                f"{record.parent.parent}: earlier work was made with other parameters ({details}); "
                "rerun with --force to start over, or choose another --outdir"
            )
        return
    with atomic_open(record, "w", encoding="utf-8", newline="\n") as out:
        json.dump(parameters, out, indent=2, sort_keys=True)
        out.write("\n")


def start_over(outdir: Path) -> None:
    """--force: remove this command's intermediates and final outputs (nothing else in DIR)."""
    shutil.rmtree(outdir / WORK_DIR, ignore_errors=True)
    for name in FINAL_OUTPUTS:
        (outdir / name).unlink(missing_ok=True)


def run(
    input_path: str | Path,
    outdir: str | Path,
    options: EmbeddingOptions = EmbeddingOptions(),
    classifier: str | None = None,
    classifier_revision: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    min_viral_fraction: float = DEFAULT_MIN_VIRAL_FRACTION,
    force: bool = False,
    quiet: bool = False,
) -> ReportData:
    """Run prepare, both embeddings, predict and report; returns what the report holds."""
    from virnucpro.models.sources import resolve_model

    started = time.monotonic()
    input_path, outdir = Path(input_path), Path(outdir)
    if not input_path.is_file():
        raise InputError(f"{input_path}: no such file")
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, not {shard_size}")
    if options.workers < 1:
        raise InputError(f"--workers must be at least 1, not {options.workers}")
    if not 0.0 <= min_viral_fraction <= 1.0:
        raise InputError(f"--min-viral-fraction must be between 0 and 1, not {min_viral_fraction}")
    classifier_spec = classifier or default_classifier(options.chunk_size)
    if options.chunk_size not in CHUNK_SIZES:
        raise InputError(
            f"--chunk-size must be 300 or 500 (the published classifiers), not {options.chunk_size}"
        )

    timings: dict[str, float] = {}
    clock = time.monotonic()
    dnabert = resolve_model(options.dnabert_model, options.dnabert_revision)
    esm = resolve_model(options.esm_model, options.esm_revision)
    loaded_classifier = load_classifier(classifier_spec, classifier_revision)
    timings["models_s"] = time.monotonic() - clock
    stat = input_path.stat()
    parameters = {
        "input": str(input_path.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "chunk_size": options.chunk_size,
        "shard_size": shard_size,
        "dnabert_model": dnabert.name,
        "dnabert_revision": dnabert.provenance,
        "esm_model": esm.name,
        "esm_revision": esm.provenance,
        "precision": options.precision,
        "classifier": loaded_classifier.name,
        "classifier_sha256": loaded_classifier.sha256,
    }
    work = outdir / WORK_DIR
    if force:
        start_over(outdir)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{outdir}: cannot write the output folder ({err.strerror})") from None
    check_parameters(work / PARAMETERS_JSON, parameters)

    clock = time.monotonic()
    ensure_prepared(input_path, work / "prepare", options.chunk_size, shard_size, quiet)
    timings["prepare_s"] = time.monotonic() - clock

    clock = time.monotonic()
    dnabert_files, esm_files = embed_prepared(work / "prepare", work / "embeddings", options, quiet)
    timings["embed_s"] = time.monotonic() - clock

    clock = time.monotonic()
    scores = (
        predict_files([*dnabert_files, *esm_files], loaded_classifier, work / "scores", quiet=quiet)
        if dnabert_files
        else []
    )
    timings["predict_s"] = time.monotonic() - clock

    run_info = {
        "command": "run",
        "parameters": {
            "chunk_size": options.chunk_size,
            "shard_size": shard_size,
            "precision": options.precision,
            "min_viral_fraction": min_viral_fraction,
            "dnabert_model": dnabert.name,
            "dnabert_revision": dnabert.provenance,
            "esm_model": esm.name,
            "esm_revision": esm.provenance,
            "classifier": loaded_classifier.name,
            "classifier_revision": loaded_classifier.revision,
            "classifier_sha256": loaded_classifier.sha256,
        },
        # Settings that change speed, never results (kept apart so runs compare equal).
        "execution": {
            k: v
            for k, v in asdict(options).items()
            if k in ("devices", "workers", "batch_size", "tokens_per_batch")
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    data = report(
        input_path, work / "prepare", scores, outdir, min_viral_fraction, run_info=run_info, quiet=quiet
    )
    counts = data.counts()
    log.info(
        "virnucpro run: %d sequences (%d virus, %d others, %d unscored), %d of %d chunks scored, %d viral; "
        "outputs in %s (%.1f s)",
        counts["sequences"],
        counts["sequences_virus"],
        counts["sequences_others"],
        counts["sequences_unscored"],
        counts["chunks_scored"],
        counts["chunks"],
        counts["chunks_virus"],
        outdir,
        time.monotonic() - started,
    )
    return data
