"""`virnucpro run`: every stage in one process tree, resumable.

Layout (`virnucpro.files.layout.RunLayout`): intermediates in `DIR/work/` (`prepare/`, `embeddings/`,
`scores/`), final outputs at the top level, and `DIR/work/parameters.json`, the parameters that
decide the results (chunk and shard size, each model and its resolved revision, precision, the
classifier's SHA-256). The input is identified by its content: prepare records the SHA-256 of each
input file in `prepare.json` while it reads them, and a rerun hashes the input again and compares.

Order of a run: every check that needs no work first (parameters, input files, the output folder,
devices and precision, models), so a refused command writes nothing; then the earlier work is
compared (a changed parameter or input is refused, naming it, unless --force); then run.json is
removed and the stages run. A rerun with the same parameters resumes: every stage keeps its
complete outputs (prepare.json; embedding files made from the same shard bytes; score files made
from the same embedding bytes) and computes only what is missing, so after a kill at any point the
same command finishes the work and writes the same outputs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from virnucpro.defaults import (
    CHUNK_SIZES,
    DEFAULT_SHARD_SIZE,
    MAX_COUNT,
    MAX_THREADS_PER_WORKER,
    MAX_WORKERS,
    PRECISIONS,
    PUBLISHED_CLASSIFIERS,
)
from virnucpro.embedding.options import EmbeddingOptions
from virnucpro.embedding.pool import Scoring
from virnucpro.errors import InputError
from virnucpro.files.atomic import atomic_open, remove_stale_temporaries
from virnucpro.files.hash_cache import HashCache
from virnucpro.files.layout import RunLayout
from virnucpro.files.outdir import (
    begin_final_outputs,
    check_prepare_replaceable,
    claim_run_outdir,
    no_trace_if_refused,
    remove_if_only_record,
    remove_run_outputs,
)
from virnucpro.files.prepared import read_summary
from virnucpro.files.sequences import SequenceInputs, is_stream
from virnucpro.method.classifier import check_chunk_size
from virnucpro.models.classifier_weights import load_classifier
from virnucpro.stages.embed import embed_prepared
from virnucpro.stages.prepare import ensure_prepared, input_hashes, prepare_is_current
from virnucpro.stages.report import ReportData, ReportOptions, check_calibration_made_for, report

log = logging.getLogger("virnucpro")

# The command-line option that sets each recorded parameter, for the refusal message. Only these
# are compared; the input's identity is its content, compared with prepare.json.
PARAMETER_OPTIONS = {
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


def default_classifier(chunk_size: int) -> str:
    if chunk_size not in PUBLISHED_CLASSIFIERS:
        raise InputError(f"--chunk-size must be 300 or 500 (the published classifiers), not {chunk_size}")
    return PUBLISHED_CLASSIFIERS[chunk_size]


def check_options(options: EmbeddingOptions, shard_size: int = 1, min_viral_fraction: float = 0.0) -> None:
    """The option values themselves (the CLI checks them too; library callers get the same lines)."""
    if options.chunk_size not in CHUNK_SIZES:
        raise InputError(
            f"--chunk-size must be 300 or 500 (the published classifiers), not {options.chunk_size}"
        )
    for option, value, highest in (
        ("--shard-size", shard_size, MAX_COUNT),
        ("--workers", options.workers, MAX_WORKERS),
        ("--batch-size", options.batch_size, MAX_COUNT),
        ("--tokens-per-batch", options.tokens_per_batch, MAX_COUNT),
        ("--threads-per-worker", options.threads_per_worker, MAX_THREADS_PER_WORKER),
    ):
        if not 1 <= value <= highest:
            raise InputError(f"{option} must be from 1 to {highest}, not {value}")
    if not 0.0 <= min_viral_fraction <= 1.0:
        raise InputError(f"--min-viral-fraction must be between 0 and 1, not {min_viral_fraction}")
    if options.precision not in PRECISIONS:
        raise InputError(f"--precision {options.precision!r}: use one of {', '.join(PRECISIONS)}")


def check_execution(devices: str, workers: int, precision: str) -> list[str]:
    """The devices the embedding workers will use, refusing (naming the option) a device that is
    not there or a precision the chosen devices cannot run. Called before any work or record."""
    from virnucpro.embedding.devices import check_precision, resolve_devices

    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    names = resolve_devices(devices, workers)
    check_precision(precision, names)
    return names


def refuse_changed_parameters(record: Path, parameters: dict) -> bool:
    """Refuse parameters that differ from the recorded ones; True when a record exists."""
    try:
        earlier = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return False  # a torn record cannot exist (atomic writes); an unreadable one is replaced
    if not isinstance(earlier, dict):
        return False
    changed = [key for key in PARAMETER_OPTIONS if earlier.get(key) != parameters[key]]
    if changed:
        details = "; ".join(
            f"{PARAMETER_OPTIONS[k]} was {earlier.get(k)!r}, now {parameters[k]!r}" for k in changed
        )
        raise InputError(
            f"{record.parent.parent}: earlier work was made with other parameters ({details}); "
            "rerun with --force to start over, or choose another --outdir"
        )
    return True


def check_input_content(layout: RunLayout, inputs: Sequence[Path], cache: HashCache) -> list[str] | None:
    """Refuse inputs whose content differs from what the earlier run prepared (naming the file);
    returns their hashes, or None when there is no finished prepare to compare with."""
    summary = read_summary(layout.prepare.folder)
    if summary is None:
        return None  # prepare never finished: it reads the inputs afresh
    earlier = summary.inputs
    hashes = input_hashes(inputs, cache)
    if len(earlier) != len(inputs):
        raise InputError(
            f"{layout.outdir}: earlier work was made from {len(earlier)} input file(s), now {len(inputs)}; "
            "rerun with --force to start over, or choose another --outdir"
        )
    for path, entry, now in zip(inputs, earlier, hashes, strict=True):
        if entry["sha256"] != now:
            raise InputError(
                f"{path}: INPUT content changed since the earlier run in {layout.outdir} (sha256 "
                f"{entry['sha256'][:12]}... then, {now[:12]}... now); rerun with --force to start over, "
                "or choose another --outdir"
            )
    return hashes


def request_fingerprint(
    layout: RunLayout, request: dict, options: EmbeddingOptions, input_sha256: Sequence[str]
) -> str | None:
    """SHA-256 of everything a run's final outputs follow from: `request` (the parameters, report
    settings and calibration), the inputs' content, this version, and the size and modification time
    of prepare's tables, of every shard and of every score file (and kept embedding file) made from
    them. None while any of those files is missing. Kept in work/request.sha256: a rerun that
    computes the same fingerprint, with the final outputs as written, has nothing to do."""
    import hashlib

    from virnucpro import __version__
    from virnucpro.files.layout import embedding_file, scores_file

    summary = read_summary(layout.prepare.folder)
    if summary is None:
        return None
    prepared = layout.prepare
    files = [prepared.summary, prepared.chunk_frames, prepared.input_sequences]
    for number, shard in enumerate(summary.shards, start=1):
        files += [*prepared.shard_files(number), scores_file(layout.scores, shard["name"])]
        if options.keep_embeddings:
            files += [embedding_file(layout.embeddings, shard["name"], kind) for kind in ("dnabert", "esm")]
    stats = []
    for path in files:
        try:
            status = path.stat()
        except OSError:
            return None
        stats.append([str(path.relative_to(layout.outdir)), status.st_size, status.st_mtime_ns])
    content = {
        "request": request,
        "inputs": list(input_sha256),
        "version": __version__,
        "files": stats,
        "kept": [options.keep_embeddings, options.embedding_dtype],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def is_current(layout: RunLayout, fingerprint: str | None) -> bool:
    """Whether the finished run recorded `fingerprint` and every final output is as the run wrote
    it (its size and modification time in the folder's record)."""
    from virnucpro.files.ownership import Record

    if fingerprint is None:
        return False
    try:
        recorded = layout.request_fingerprint.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return False
    if recorded != fingerprint:
        return False
    record = Record(layout.outdir)
    entries = record.entries()
    return all(record.owns(path, entries) for path in layout.final_outputs())


def write_parameters(record: Path, parameters: dict, inputs: Sequence[Path]) -> None:
    content = {**parameters, "inputs": [str(path.resolve()) for path in inputs]}
    with atomic_open(record, "w", encoding="utf-8", newline="\n") as out:
        json.dump(content, out, indent=2, sort_keys=True)
        out.write("\n")


@dataclass(frozen=True)
class RunOptions:
    """Every setting of `virnucpro run`, built once from the command line: how sequences are
    prepared and embedded, how they are called and reported, which classifier scores them."""

    embedding: EmbeddingOptions = field(default_factory=EmbeddingOptions)
    report: ReportOptions = field(default_factory=ReportOptions)
    classifier: str | None = None  # None: the published classifier for the chunk size
    classifier_revision: str | None = None
    shard_size: int = DEFAULT_SHARD_SIZE


def run(
    inputs: str | Path | Sequence[str | Path],
    outdir: str | Path,
    options: RunOptions = RunOptions(),
    force: bool = False,
    quiet: bool = False,
) -> ReportData | None:
    """Run prepare, both embeddings and the scores, and report on one sample (one or several
    files); None when the folder already held this very run's results (nothing was done)."""
    embedding, report_options = options.embedding, options.report
    classifier, classifier_revision = options.classifier, options.classifier_revision
    shard_size, min_viral_fraction = options.shard_size, report_options.min_viral_fraction
    from virnucpro.models.sources import resolve_model

    started = time.monotonic()
    source = SequenceInputs(inputs)
    input_paths = [file.path for file in source.files]
    layout = RunLayout(Path(outdir))

    new_folder = not layout.outdir.exists()
    # Everything that can be refused is refused before anything is written.
    with no_trace_if_refused(layout.outdir):
        check_options(embedding, shard_size, min_viral_fraction)
        calibration = report_options.check()
        for file in source.files:
            if is_stream(file.path):
                raise InputError(
                    f"{file.name}: a pipe or standard input can be read once only, but run reads its input "
                    "twice (prepare, then viral.fa); save it to a file, or use `virnucpro prepare -`"
                )
            file.check()
        claim_run_outdir(layout, input_paths)
        check_execution(embedding.devices, embedding.workers, embedding.precision)
        classifier_spec = classifier or default_classifier(embedding.chunk_size)
        timings: dict[str, float] = {}
        clock = time.monotonic()
        dnabert = resolve_model(embedding.dnabert_model, embedding.dnabert_revision)
        esm = resolve_model(embedding.esm_model, embedding.esm_revision)
        # Now, not when the first shard needs them (an input without frames would never find out).
        from virnucpro.embedding.engine import check_model_folder

        check_model_folder("dnabert", dnabert.path)
        check_model_folder("esm", esm.path)
        loaded_classifier = load_classifier(classifier_spec, classifier_revision)
        check_chunk_size(loaded_classifier.config, embedding.chunk_size, classifier_spec)
        if calibration is not None:  # now, not after the embedding
            check_calibration_made_for(
                calibration[0],
                embedding.chunk_size,
                loaded_classifier.sha256,
                str(report_options.calibration),
                True,
            )
        timings["models_s"] = time.monotonic() - clock
        parameters = {
            "chunk_size": embedding.chunk_size,
            "shard_size": shard_size,
            "dnabert_model": dnabert.name,
            "dnabert_revision": dnabert.provenance,
            "esm_model": esm.name,
            "esm_revision": esm.provenance,
            "precision": embedding.precision,
            "classifier": loaded_classifier.name,
            "classifier_sha256": loaded_classifier.sha256,
        }
        hashes = None
        hashes_cache = HashCache(layout.hashes)
        if force:
            remove_run_outputs(layout)
        else:
            if refuse_changed_parameters(layout.parameters, parameters):
                hashes = check_input_content(layout, input_paths, hashes_cache)
            if hashes is None and read_summary(layout.prepare.folder) is not None:
                hashes = input_hashes(input_paths, hashes_cache)
            if not prepare_is_current(
                input_paths, layout.prepare.folder, embedding.chunk_size, shard_size, hashes
            ):
                # prepare will replace its folder's files: they must be ours (checked now, before
                # the final outputs are removed)
                check_prepare_replaceable(layout.prepare)
        request = {
            "parameters": parameters,
            "min_viral_fraction": min_viral_fraction,
            "report": report_options.parameters(),
            "calibration_sha256": calibration[1] if calibration is not None else None,
        }
        if hashes is not None and is_current(layout, request_fingerprint(layout, request, embedding, hashes)):
            from virnucpro.files.ownership import track

            track(layout.outdir)  # the hash table's new version goes into the folder's record
            hashes_cache.save()
            for folder in (layout.outdir, *layout.intermediate_folders()):
                remove_stale_temporaries(folder)
            log.info("virnucpro run: %s is complete and current; nothing to do", layout.outdir)
            return None

    # From here on the folder changes: the completion marker goes first.
    begin_final_outputs(layout.outdir, input_paths, "virnucpro run")
    try:
        layout.work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{layout.outdir}: cannot write the output folder ({err.strerror})") from None
    if not layout.parameters.is_file():
        write_parameters(layout.parameters, parameters, input_paths)
    with contextlib.suppress(FileNotFoundError):
        layout.request_fingerprint.unlink()  # until this run's report is written
    for folder in layout.intermediate_folders():
        remove_stale_temporaries(folder)

    clock = time.monotonic()
    try:
        ensure_prepared(input_paths, layout.prepare.folder, embedding.chunk_size, shard_size, quiet, hashes)
    except InputError:
        if new_folder:  # a record refused while prepare read it: the folder made here holds nothing of use
            remove_run_outputs(layout)
            remove_if_only_record(layout.outdir)
        raise
    timings["prepare_s"] = time.monotonic() - clock

    clock = time.monotonic()
    scoring = Scoring(loaded_classifier, layout.scores, embedding.keep_embeddings, embedding.embedding_dtype)
    embed_prepared(layout.prepare.folder, layout.embeddings, embedding, quiet, scoring, hashes_cache)
    scores = scoring.outputs
    timings["embed_and_score_s"] = time.monotonic() - clock

    run_info = {
        "command": "run",
        "parameters": {
            "chunk_size": embedding.chunk_size,
            "shard_size": shard_size,
            "precision": embedding.precision,
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
            for k, v in asdict(embedding).items()
            if k
            in (
                "devices",
                "workers",
                "batch_size",
                "tokens_per_batch",
                "threads_per_worker",
                "keep_embeddings",
                "embedding_dtype",
            )
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    summary = read_summary(layout.prepare.folder)  # prepare recorded the inputs' hashes as it read them
    fingerprint = request_fingerprint(layout, request, embedding, summary.input_sha256) if summary else None
    log.info("report: from %d score file(s)", len(scores))
    data = report(
        input_paths,
        layout.prepare.folder,
        scores,
        layout.outdir,
        report_options,
        run_info=run_info,
        quiet=quiet,
        check_inputs=False,  # prepared from them in this run, or checked against prepare.json above
    )
    if fingerprint is not None:
        with atomic_open(layout.request_fingerprint, "w", encoding="ascii") as out:
            out.write(fingerprint + "\n")
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
