"""The embedding worker pool: one spawned worker per device, shards dealt round-robin.

Plan: shards sorted by name, shard i to worker i mod N (same shards and N, same plan). A shard task
holds the files of one shard that this command embeds: its nucleotide file (DNABERT-S), its protein
file (ESM-2), or both (`virnucpro embed`: both models resident in each worker), and, when the job
scores, the shard's scores file (the classifier runs in the worker; embeddings are then written
only when kept). Shards whose outputs are all complete are left out before any worker starts, so a
finished rerun loads no model; each worker checks again (`embedding.worker`).

Workers report to the parent through a pipe each: log records, progress, the file they start, the
error they hit, and that they finished. A worker that raises, or dies without saying it finished
(SIGKILL, out of host memory), fails the command with the file and the cause in one line; the
other workers stop after their current batch, and every finished file stays for the next run to
resume from.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from virnucpro.defaults import DEFAULT_TOKENS_PER_BATCH
from virnucpro.embedding.devices import check_precision, resolve_devices
from virnucpro.embedding.engine import KINDS, POOLING, KernelChoice, check_model_folder
from virnucpro.embedding.jobs import EmbedJob, FileTask, ModelJob, ScoringJob, ShardTask
from virnucpro.embedding.options import EmbeddingOptions
from virnucpro.embedding.worker import STOPPING_SIGNALS, worker_main
from virnucpro.errors import InputError, InternalError, VirNucProError
from virnucpro.files.layout import SCORES_SUFFIX
from virnucpro.files.ownership import tracked
from virnucpro.files.shards import NUCLEOTIDE_SUFFIX, PROTEIN_SUFFIX, shard_of
from virnucpro.models.precision import CLI_PRECISIONS
from virnucpro.progress import log, progress_task

STOP_GRACE_SECONDS = 30.0  # for the other workers to reach a batch boundary after a failure
INTERRUPT_GRACE_SECONDS = 5.0  # the same after Ctrl-C or SIGTERM, where the user waits for the prompt
OUTPUT_SUFFIX = {"dnabert": ".dnabert.parquet", "esm": ".esm.parquet"}
INPUT_SUFFIX = {"dnabert": NUCLEOTIDE_SUFFIX, "esm": PROTEIN_SUFFIX}


def output_path(kind: str, input_path: Path, outdir: Path) -> Path:
    try:
        name = shard_of(input_path)
    except ValueError as err:
        raise InputError(
            f"{input_path}: not a shard file (expected shard_NNNNN.*, as prepare writes)"
        ) from err
    return outdir / f"{name}{OUTPUT_SUFFIX[kind]}"


def assign_round_robin(
    items: Sequence, workers: int, key: Callable = lambda p: (Path(p).name, str(p))
) -> list:
    """Items sorted by `key` (file name, then full path), item i to worker i mod `workers`."""
    ordered = sorted(items, key=key)
    return [ordered[w::workers] for w in range(workers)]


def count_records(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.startswith(b">"))


def check_settings(options: EmbeddingOptions) -> None:
    if options.precision not in CLI_PRECISIONS:
        raise InputError(f"--precision {options.precision}: use one of {', '.join(CLI_PRECISIONS)}")
    tokens_per_batch = options.tokens_per_batch
    if (
        options.batch_size < 1
        or (tokens_per_batch is not None and tokens_per_batch < 1)
        or options.threads_per_worker < 1
    ):
        raise InputError("--batch-size, --tokens-per-batch and --threads-per-worker must be at least 1")


def existing_files(inputs: Sequence[str | Path]) -> list[Path]:
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input shard files given")
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    return paths


def claim_outdir(outdir: Path, inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """The output folder is usable, no input is among the outputs, and the outputs there are ours."""
    from virnucpro.files.outdir import claim_stage_outputs

    claim_stage_outputs(outdir, inputs, outputs, "virnucpro embed")


def model_job(kind: str, options: EmbeddingOptions) -> tuple[ModelJob, str]:
    """The job entry of one model (resolved, its folder checked here rather than in N workers
    after start-up), and a description for the log."""
    from virnucpro.models.sources import resolve_model

    resolved = resolve_model(*options.model(kind))
    check_model_folder(kind, resolved.path)
    job = ModelJob(
        kind=kind,
        model_path=str(resolved.path),
        compared={
            "model": resolved.name,
            "revision": resolved.provenance,
            "precision": options.precision,
            "pooling": POOLING[kind],
        },
        batch_size=options.batch_size,
        tokens_per_batch=options.tokens_per_batch or DEFAULT_TOKENS_PER_BATCH,
    )
    return job, f"{resolved.name} ({resolved.provenance})"


def embed_files(
    kind: str,
    inputs: Sequence[str | Path],
    outdir: str | Path,
    options: EmbeddingOptions = EmbeddingOptions(),
    quiet: bool = False,
    kernels: KernelChoice = KernelChoice(),
) -> list[Path]:
    """Embed shard FASTA files of one kind into `outdir/shard_NNNNN.{dnabert,esm}.parquet`; returns
    the output paths in input order. Complete outputs are kept; a failure raises `VirNucProError`."""
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r}")
    check_settings(options)
    paths = existing_files(inputs)
    outdir = Path(outdir)
    outputs = [output_path(kind, p, outdir) for p in paths]
    if len(set(outputs)) != len(outputs):
        raise InputError("two input files are named after the same shard; their outputs would collide")
    claim_outdir(outdir, paths, outputs)
    job, described = model_job(kind, options)
    tasks = [ShardTask(shard_of(p), (FileTask(kind, p, o),)) for p, o in zip(paths, outputs, strict=True)]
    embed_job = EmbedJob(
        {kind: job}, options.precision, options.threads_per_worker, kernels, recorded_in=tuple(tracked())
    )
    start_pool(embed_job, tasks, options.devices, options.workers, quiet, described)
    return outputs


def embed_shards(
    inputs: Sequence[str | Path],
    outdir: str | Path,
    options: EmbeddingOptions = EmbeddingOptions(),
    quiet: bool = False,
    kernels: KernelChoice = KernelChoice(),
    scoring: Scoring | None = None,
    hashes=None,
) -> tuple[list[Path], list[Path]]:
    """Both embeddings of prepare's shard pairs (`.nucleotide.fa` + `.protein.faa`, paired by shard
    name) with both models resident in each worker; returns the DNABERT-S and the ESM-2 outputs in
    shard order. The files equal those of `embed_files` for each kind, byte for byte.

    With `scoring`, each worker also scores every shard into `scoring.outdir/shard_NNNNN.scores.parquet`
    (the bytes `predict` writes from the same embeddings, but for the embedding files' own hashes)
    and writes the embedding files only when `scoring.keep_embeddings`; the scores files are
    `Scoring.outputs`. `hashes` (a `hash_cache.HashCache`) saves hashing unchanged shards again."""
    check_settings(options)
    paths = existing_files(inputs)
    outdir = Path(outdir)
    pairs: dict[str, dict[str, Path]] = {}
    for path in paths:
        kind = next((k for k, suffix in INPUT_SUFFIX.items() if path.name.endswith(suffix)), None)
        if kind is None:
            raise InputError(
                f"{path}: not a shard file (expected shard_NNNNN{NUCLEOTIDE_SUFFIX} or "
                f"shard_NNNNN{PROTEIN_SUFFIX}, as prepare writes)"
            )
        output_path(kind, path, outdir)  # refuses names that are not shard names
        files = pairs.setdefault(shard_of(path), {})
        if kind in files:
            raise InputError(f"{files[kind]} and {path} are the same shard; their outputs would collide")
        files[kind] = path
    for files in pairs.values():
        if len(files) < len(KINDS):
            (kind, path), missing = next(iter(files.items())), next(k for k in KINDS if k not in files)
            raise InputError(
                f"{path}: its shard's {INPUT_SUFFIX[missing]} file is not among the inputs "
                f"(`embed` takes both files of each shard; embed-dna/embed-protein take one kind)"
            )
    if scoring is None or scoring.keep_embeddings:
        claim_outdir(
            outdir, paths, [output_path(k, files[k], outdir) for files in pairs.values() for k in files]
        )
    if scoring is not None:
        claim_outdir(
            scoring.outdir, paths, [scoring.outdir / f"{name}{SCORES_SUFFIX}" for name in sorted(pairs)]
        )
    jobs, described = {}, []
    for kind in KINDS:
        jobs[kind], text = model_job(kind, options)
        described.append(text)
    scoring_job = scoring.job() if scoring is not None else None
    if scoring is not None:
        described.append(f"scored with {scoring.classifier.name}")
        scoring.outputs = [scoring.outdir / f"{name}{SCORES_SUFFIX}" for name in sorted(pairs)]
    tasks = [
        ShardTask(
            name,
            tuple(FileTask(k, files[k], output_path(k, files[k], outdir)) for k in KINDS),
            scoring.outdir / f"{name}{SCORES_SUFFIX}" if scoring is not None else None,
        )
        for name, files in sorted(pairs.items())
    ]
    start_pool(
        EmbedJob(
            jobs,
            options.precision,
            options.threads_per_worker,
            kernels,
            scoring_job,
            recorded_in=tuple(tracked()),
        ),
        tasks,
        options.devices,
        options.workers,
        quiet,
        " + ".join(described),
        hashes,
    )
    return (
        [t.files[0].output for t in tasks],
        [t.files[1].output for t in tasks],
    )


@dataclass
class Scoring:
    """Score in the workers with `classifier` (a `LoadedClassifier`) into `outdir`."""

    classifier: object
    outdir: Path
    keep_embeddings: bool = False
    embedding_dtype: str = "float32"
    outputs: list[Path] | None = None  # the scores files, in shard order (set by `embed_shards`)

    def job(self) -> ScoringJob:
        from virnucpro.models.classifier_weights import classifier_fields

        if self.embedding_dtype not in ("float32", "float16"):
            raise InputError(f"--embedding-dtype {self.embedding_dtype}: use float32 or float16")
        return ScoringJob(
            state={k: v.detach().clone() for k, v in self.classifier.model.state_dict().items()},
            config=self.classifier.config,
            fields=classifier_fields(self.classifier),
            keep_embeddings=self.keep_embeddings,
            embedding_dtype=self.embedding_dtype,
        )


def unfinished(tasks: list[ShardTask], job: EmbedJob, hashes) -> list[ShardTask]:
    """The shards with an output to make (footers only; shard hashes from `hashes` when given, so a
    finished shard that did not change is not read at all). The hashes found go with the tasks."""
    from virnucpro.files.hash_cache import HashCache

    hashes = hashes or HashCache()
    todo = []
    for task in tasks:
        sources = {f.kind: hashes.sha256(f.input) for f in task.files}
        if not task.is_done(job, sources):
            files = tuple(FileTask(f.kind, f.input, f.output, sources[f.kind]) for f in task.files)
            todo.append(ShardTask(task.name, files, task.scores))
    return todo


def start_pool(
    job: EmbedJob,
    tasks: list[ShardTask],
    devices: str,
    workers: int,
    quiet: bool,
    described: str,
    hashes=None,
):
    device_names = resolve_devices(devices, workers)
    check_precision(job.precision, device_names)
    todo = unfinished(tasks, job, hashes)
    if hashes is not None:
        hashes.save()
    if len(todo) < len(tasks):
        left = {t.name for t in todo}
        kept = [t.name for t in tasks if t.name not in left]
        shown = ", ".join(kept[:10]) + (f" and {len(kept) - 10} more" if len(kept) > 10 else "")
        log.info("embedding: %d of %d shard(s) complete, kept: %s", len(kept), len(tasks), shown)
    if not todo:
        return
    tasks = todo
    plan = assign_round_robin(tasks, min(len(device_names), len(tasks)), key=lambda t: t.name)
    total = sum(count_records(f.input) for t in tasks for f in t.files)
    log.info(
        "embedding %d shard(s), %d sequences, with %s on %d worker(s): %s",
        len(tasks),
        total,
        described,
        len(plan),
        ", ".join(device_names[: len(plan)]),
    )
    run_pool(job, plan, device_names, total, quiet)


def run_pool(job: EmbedJob, plan: list[list[ShardTask]], device_names: list[str], total: int, quiet: bool):
    """Start one worker per plan entry and follow them until all have ended; raise on a failure."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    # One pipe per worker, not one shared queue: a worker killed mid-send can then tear only its own
    # channel, never leave a lock held that the other workers would wait on forever.
    channels = [context.Pipe(duplex=False) for _ in plan]
    processes = [
        context.Process(
            target=worker_main,
            args=(index, device_names[index], tasks, job, channels[index][1], stop),
            name=f"virnucpro-embed-{index + 1}",
            daemon=True,
        )
        for index, tasks in enumerate(plan)
    ]
    current: dict[int, str] = {}
    finished: set[int] = set()
    failure: str | None = None
    failure_class: type[VirNucProError] = VirNucProError
    failure_details = ""  # the traceback of a worker's bug
    deadline = float("inf")
    label = f"embedding ({' + '.join(job.models)})"
    with progress_task(label, total=total, quiet=quiet, unit="sequences") as bar:

        def handle(index: int, message) -> None:
            nonlocal failure, failure_class, failure_details
            if isinstance(message, logging.LogRecord):
                if message.levelno >= log.getEffectiveLevel():  # --quiet applies to workers too
                    log.handle(message)
                return
            what, *rest = message
            if what == "start":
                current[index] = rest[0]
            elif what == "progress":
                bar.advance(rest[0])
            elif what == "finished":
                finished.add(index)
            elif what == "error" and failure is None:
                where = f"embedding {rest[0]}" if rest[0] else "starting"
                failure = f"worker {index + 1} ({device_names[index]}) failed {where}: {rest[1]}"
                failure_class = InputError if rest[2] else VirNucProError
                failure_details = rest[3]

        try:
            with interrupts_deferred():
                for process in processes:
                    process.start()
            for index, process in enumerate(processes):
                channels[index][1].close()  # the worker holds the sending end; EOF means it is gone
                log.info(
                    "worker %d started (pid %d, %s): %s",
                    index + 1,
                    process.pid,
                    device_names[index],
                    ", ".join(t.name for t in plan[index]),
                )
            open_channels = {channels[index][0]: index for index in range(len(processes))}
            while open_channels:
                for receiver in multiprocessing.connection.wait(list(open_channels), timeout=0.5):
                    index = open_channels[receiver]
                    try:
                        handle(index, receiver.recv())
                        continue
                    except (EOFError, OSError, pickle.UnpicklingError):
                        pass  # the worker exited (or was killed, perhaps mid-message)
                    del open_channels[receiver]
                    processes[index].join(timeout=STOP_GRACE_SECONDS)
                    if index not in finished and failure is None:
                        failure = (
                            f"worker {index + 1} ({device_names[index]}) "
                            f"{describe_exit(processes[index].exitcode)} "
                            f"while embedding {current.get(index, 'its first file')}"
                        )
                if failure is not None and not stop.is_set():
                    stop.set()  # the others stop at their next batch boundary
                    deadline = time.monotonic() + STOP_GRACE_SECONDS
                if time.monotonic() > deadline:
                    for index in open_channels.values():
                        processes[index].kill()
        except BaseException:
            # Ctrl-C or SIGTERM here: the workers stop at their next batch boundary and finish the
            # file they are writing (no `.tmp-*` left); one still busy after the grace is terminated.
            stop.set()
            grace_ends = time.monotonic() + INTERRUPT_GRACE_SECONDS
            for process in processes:
                if process.pid is not None:
                    process.join(timeout=max(0.0, grace_ends - time.monotonic()))
                if process.pid is not None and process.is_alive():
                    process.terminate()
            raise
        finally:
            for process in processes:
                if process.pid is None:  # never started
                    continue
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
            for receiver, _ in channels:
                receiver.close()
    if failure is not None and failure_details:
        raise InternalError(f"{failure}; finished files are kept", failure_details)
    if failure is not None:
        raise failure_class(f"{failure}; finished files are kept, rerun the same command to resume")


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Start workers without a signal cutting a start in half. Ctrl-C reaches the whole process group
    and the parent alone handles it (it stops the workers); SIGTERM from a scheduler or `kill` may
    reach the parent alone. These signals are blocked in this thread while workers start, so they
    inherit them blocked through exec and no signal during their start-up prints a traceback (see
    `worker_main`); one that another thread of ours takes meanwhile is held by a handler here and
    delivered again once every worker has started."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; a library caller there handles it
        return
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: received.append(signum))
        for signum in STOPPING_SIGNALS
    }
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING_SIGNALS)  # pending ones reach `received`
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        signal.raise_signal(received[0])  # to the handler restored above (the CLI's raises)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
