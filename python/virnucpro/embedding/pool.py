"""The embedding worker pool: one spawned worker per device, shards dealt round-robin.

Plan: shards sorted by name, shard i to worker i mod N (same shards and N, same plan). A shard task
holds the files of one shard that this command embeds: its nucleotide file (DNABERT-S), its protein
file (ESM-2), or both (`virnucpro embed`: both models resident in each worker). Each worker fixes
its thread count (independent of N, so any N gives byte-identical files), loads each model once
(only when a file needs it), and keeps the device busy with three threads:

- a reader thread, one shard ahead: reads the shard files, skips outputs that are complete
  (`embedding_files.is_complete` with this run's model, revision, precision and pooling), and
  tokenizes the rest (the tokenizers run in Rust without the GIL, or vectorised numpy);
- the main thread: pads batches into pinned buffers, issues them without waiting for the device,
  and gathers the shard's vectors in one copy at its end;
- a writer thread: writes each finished table atomically while the next shard computes.

Workers report to the parent through a pipe each: log records, progress, the file they start, the
error they hit, and that they finished. A worker that raises, or dies without saying it finished
(SIGKILL, out of host memory), fails the command with the file and the cause in one line; the
other workers stop after their current batch, and every finished file stays for the next run to
resume from.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from virnucpro import __version__
from virnucpro.defaults import DEFAULT_BATCH_SIZE, DEFAULT_THREADS_PER_WORKER, DEFAULT_TOKENS_PER_BATCH
from virnucpro.embedding.devices import check_precision, resolve_devices
from virnucpro.embedding.engine import KINDS, POOLING, KernelChoice, check_model_folder
from virnucpro.embedding.precision import CLI_PRECISIONS
from virnucpro.errors import InputError, InternalError, VirNucProError, output_error
from virnucpro.ownership import track_all, tracked
from virnucpro.progress import log, progress_task
from virnucpro.shards import NUCLEOTIDE_SUFFIX, PROTEIN_SUFFIX, shard_of

STOP_GRACE_SECONDS = 30.0  # for the other workers to reach a batch boundary after a failure
INTERRUPT_GRACE_SECONDS = 5.0  # the same after Ctrl-C or SIGTERM, where the user waits for the prompt
OUTPUT_SUFFIX = {"dnabert": ".dnabert.parquet", "esm": ".esm.parquet"}
INPUT_SUFFIX = {"dnabert": NUCLEOTIDE_SUFFIX, "esm": PROTEIN_SUFFIX}
BATCH_SETTING = {"dnabert": "batch_size", "esm": "tokens_per_batch"}


@dataclass(frozen=True)
class ModelJob:
    """One model of a job (pickled to spawned workers)."""

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
class EmbedJob:
    """What every worker needs besides its shards and device."""

    models: dict[str, ModelJob]  # by kind
    precision: str
    threads: int
    kernels: KernelChoice = field(default_factory=KernelChoice)
    # The folders whose writes this command records (`ownership`): workers record theirs there.
    recorded_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileTask:
    kind: str
    input: Path
    output: Path


@dataclass(frozen=True)
class ShardTask:
    name: str
    files: tuple[FileTask, ...]


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


def check_settings(precision: str, batch_size: int, tokens_per_batch: int | None, threads: int) -> None:
    if precision not in CLI_PRECISIONS:
        raise InputError(f"--precision {precision}: use one of {', '.join(CLI_PRECISIONS)}")
    if batch_size < 1 or (tokens_per_batch is not None and tokens_per_batch < 1) or threads < 1:
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
    from virnucpro.output_folder import stage_folder

    stage_folder(outdir, inputs, outputs, "virnucpro embed")


def model_job(
    kind: str, model: str, revision: str | None, precision: str, batch_size: int, tokens_per_batch: int | None
) -> tuple[ModelJob, str]:
    """The job entry of one model (resolved, its folder checked here rather than in N workers
    after start-up), and a description for the log."""
    from virnucpro.models.sources import resolve_model

    resolved = resolve_model(model, revision)
    check_model_folder(kind, resolved.path)
    job = ModelJob(
        kind=kind,
        model_path=str(resolved.path),
        compared={
            "model": resolved.name,
            "revision": resolved.provenance,
            "precision": precision,
            "pooling": POOLING[kind],
        },
        batch_size=batch_size,
        tokens_per_batch=tokens_per_batch or DEFAULT_TOKENS_PER_BATCH,
    )
    return job, f"{resolved.name} ({resolved.provenance})"


def embed_files(
    kind: str,
    inputs: Sequence[str | Path],
    outdir: str | Path,
    model: str,
    revision: str | None = None,
    devices: str = "auto",
    workers: int = 1,
    precision: str = "fp32",
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokens_per_batch: int | None = None,
    quiet: bool = False,
    threads_per_worker: int = DEFAULT_THREADS_PER_WORKER,
    kernels: KernelChoice = KernelChoice(),
) -> list[Path]:
    """Embed shard FASTA files of one kind into `outdir/shard_NNNNN.{dnabert,esm}.parquet`; returns
    the output paths in input order. Complete outputs are kept; a failure raises `VirNucProError`."""
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r}")
    check_settings(precision, batch_size, tokens_per_batch, threads_per_worker)
    paths = existing_files(inputs)
    outdir = Path(outdir)
    outputs = [output_path(kind, p, outdir) for p in paths]
    if len(set(outputs)) != len(outputs):
        raise InputError("two input files are named after the same shard; their outputs would collide")
    claim_outdir(outdir, paths, outputs)
    job, described = model_job(kind, model, revision, precision, batch_size, tokens_per_batch)
    tasks = [ShardTask(shard_of(p), (FileTask(kind, p, o),)) for p, o in zip(paths, outputs, strict=True)]
    embed_job = EmbedJob({kind: job}, precision, threads_per_worker, kernels, tuple(tracked()))
    start_pool(embed_job, tasks, devices, workers, quiet, described)
    return outputs


def embed_shards(
    inputs: Sequence[str | Path],
    outdir: str | Path,
    dnabert_model: str,
    esm_model: str,
    dnabert_revision: str | None = None,
    esm_revision: str | None = None,
    devices: str = "auto",
    workers: int = 1,
    precision: str = "fp32",
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokens_per_batch: int | None = None,
    quiet: bool = False,
    threads_per_worker: int = DEFAULT_THREADS_PER_WORKER,
    kernels: KernelChoice = KernelChoice(),
) -> tuple[list[Path], list[Path]]:
    """Both embeddings of prepare's shard pairs (`.nucleotide.fa` + `.protein.faa`, paired by shard
    name) with both models resident in each worker; returns the DNABERT-S and the ESM-2 outputs in
    shard order. The files equal those of `embed_files` for each kind, byte for byte."""
    check_settings(precision, batch_size, tokens_per_batch, threads_per_worker)
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
    claim_outdir(outdir, paths, [output_path(k, files[k], outdir) for files in pairs.values() for k in files])
    jobs, described = {}, []
    for kind, model, revision in (
        ("dnabert", dnabert_model, dnabert_revision),
        ("esm", esm_model, esm_revision),
    ):
        jobs[kind], text = model_job(kind, model, revision, precision, batch_size, tokens_per_batch)
        described.append(text)
    tasks = [
        ShardTask(name, tuple(FileTask(k, files[k], output_path(k, files[k], outdir)) for k in KINDS))
        for name, files in sorted(pairs.items())
    ]
    start_pool(
        EmbedJob(jobs, precision, threads_per_worker, kernels, tuple(tracked())),
        tasks,
        devices,
        workers,
        quiet,
        " + ".join(described),
    )
    return (
        [t.files[0].output for t in tasks],
        [t.files[1].output for t in tasks],
    )


def start_pool(
    job: EmbedJob, tasks: list[ShardTask], devices: str, workers: int, quiet: bool, described: str
):
    device_names = resolve_devices(devices, workers)
    check_precision(job.precision, device_names)
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


# Signals that end a run: Ctrl-C (KeyboardInterrupt) and SIGTERM/SIGHUP (`Terminated`, see the CLI).
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


class _WorkerPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"{self.prefix}{record.getMessage()}"
        record.args = None
        return True


class _Channel:
    """The sending end of a worker's pipe, with the `put_nowait` that `QueueHandler` calls."""

    def __init__(self, connection):
        self.connection = connection
        self.lock = threading.Lock()  # the reader and writer threads log too

    def put(self, message) -> None:
        with self.lock:
            try:
                self.connection.send(message)
            except (BrokenPipeError, ConnectionResetError):
                # The parent is gone (killed with -9): nobody reads our results, so stop quietly
                # instead of printing tracebacks; a file half-written is a `.tmp-*` the next run removes.
                os._exit(1)

    put_nowait = put


@dataclass
class PreparedFile:
    """A file of a shard, read and (unless its output is complete) tokenized by the reader thread."""

    task: FileTask
    ids: list[str]
    table: object | None  # TokenTable; None when the output is complete
    source: dict[str, str]  # the shard's own hash (`source_sha256`): a changed shard recomputes


class ShardReader:
    """The reader thread: reads and tokenizes the worker's shards, one ahead of the device. Yields
    the prepared files in task order; an error is raised in the caller's thread, naming its file."""

    def __init__(self, tasks: list[ShardTask], job: EmbedJob, stop):
        from virnucpro.embedding.engine import load_tokenizer

        self.tokenizers = {kind: load_tokenizer(kind, m.model_path) for kind, m in job.models.items()}
        self.tasks, self.job, self.stop = tasks, job, stop
        self.ready: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self.run, name="virnucpro-reader", daemon=True)
        self.thread.start()

    def run(self) -> None:
        from virnucpro.checksums import file_sha256
        from virnucpro.embedding_files import is_complete
        from virnucpro.shards import read_shard

        for shard in self.tasks:
            for task in shard.files:
                if self.stop.is_set():
                    self.ready.put(None)
                    return
                try:
                    ids, sequences = read_shard(task.input)
                    source = {"source_sha256": file_sha256(task.input)}
                    compared = {**self.job.models[task.kind].compared, **source}
                    if is_complete(task.output, compared, len(ids)):
                        table = None
                    else:
                        table = self.tokenizers[task.kind].encode_table(sequences)
                    self.ready.put(PreparedFile(task, ids, table, source))
                except BaseException as err:  # handed to the main thread, which fails the worker
                    self.ready.put((task, err))
                    return
        self.ready.put(None)

    def __iter__(self) -> Iterator[PreparedFile]:
        while (item := self.ready.get()) is not None:
            if isinstance(item, tuple):
                task, err = item
                raise FileFailure(task.input, err)
            yield item


class FileFailure(Exception):
    """An error while reading or writing `path` (raised in the worker's main thread)."""

    def __init__(self, path: Path, cause: BaseException):
        super().__init__(str(cause))
        self.path, self.cause = path, cause


class BackgroundWriter:
    """The writer thread: writes finished tables atomically, in order, while the next shard
    computes. `submit` and `close` raise the first write error (disk full, ...) as one line."""

    def __init__(self, on_written: Callable[[FileTask, int], None]):
        self.todo: queue.Queue = queue.Queue(maxsize=2)
        self.failure: FileFailure | None = None
        self.on_written = on_written
        self.thread = threading.Thread(target=self.run, name="virnucpro-writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        from virnucpro.embedding_files import write_embeddings

        while (item := self.todo.get()) is not None:
            task, ids, vectors, metadata = item
            if self.failure is not None:
                continue
            try:
                write_embeddings(task.output, ids, vectors, metadata)
                self.on_written(task, len(ids))
            except OSError as err:
                self.failure = FileFailure(task.input, output_error(task.output, err))
            except BaseException as err:
                self.failure = FileFailure(task.input, err)

    def submit(self, task: FileTask, ids, vectors, metadata) -> None:
        self.check()
        self.todo.put((task, ids, vectors, metadata))

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        self.todo.put(None)
        self.thread.join()
        self.check()


def worker_main(index: int, device: str, tasks: list[ShardTask], job: EmbedJob, connection, stop) -> None:
    """A spawned worker: embed `tasks` in order on `device`, reporting through `connection`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (see run_pool)
    # SIGTERM and SIGHUP keep their default: the parent's terminate(), or a scheduler, ends us at once.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING_SIGNALS)
    messages = _Channel(connection)
    handler = logging.handlers.QueueHandler(messages)
    handler.addFilter(_WorkerPrefix(f"worker {index + 1}: "))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    track_all(job.recorded_in)
    current: Path | None = None
    writer: BackgroundWriter | None = None
    try:
        import torch

        from virnucpro.embedding.engine import HostStaging, embed_table, load_embedder

        # A fixed thread count, whatever the number of workers: the arithmetic (and so every
        # output byte) must not depend on how the work was split.
        torch.set_num_threads(job.threads)
        tf32 = "n/a"
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
            if job.precision == "fp32":
                # fp32 parity with the published classifier needs exact fp32 matmuls.
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                tf32 = "off"
        embedders: dict = {}
        staging = HostStaging(torch.device(device))
        writer = BackgroundWriter(
            lambda task, rows: log.info("embedded %s (%d sequences)", task.output.name, rows)
        )
        for prepared in ShardReader(tasks, job, stop):
            if stop.is_set():
                break
            task = prepared.task
            current = task.input
            messages.put(("start", str(task.input)))
            if prepared.table is None:
                log.info("skipped %s (complete)", task.output.name)
                messages.put(("progress", len(prepared.ids)))
                continue
            model = job.models[task.kind]
            if task.kind not in embedders:
                embedders[task.kind] = load_embedder(
                    task.kind,
                    model.model_path,
                    device,
                    job.precision,
                    model.batch_size,
                    model.tokens_per_batch,
                    job.kernels,
                )
                log.info(
                    "loaded %s on %s (%s, attention: %s)",
                    model.compared["model"],
                    device,
                    job.precision,
                    embedders[task.kind].attention_kernel,
                )
            embedder = embedders[task.kind]
            vectors = embed_table(
                embedder,
                prepared.table,
                on_batch=lambda n: messages.put(("progress", n)),
                should_stop=stop.is_set,
                staging=staging,
            )
            recorded = {**model.recorded(tf32, embedder.attention_kernel), **prepared.source}
            writer.submit(task, prepared.ids, vectors, recorded)
        current = None
        writer.close()
        messages.put(("finished",))
    except BaseException as err:  # reported to the parent, which fails the command
        if writer is not None and writer.thread.is_alive():
            with contextlib.suppress(BaseException):
                writer.close()  # files finished before the failure are still written
        if isinstance(err, FileFailure):
            current, err = err.path, err.cause
        if isinstance(err, VirNucProError):
            cause, details = str(err), ""
        else:  # a bug: its traceback goes to the parent, for the command's crash log
            cause, details = f"{type(err).__name__}: {err}", "".join(traceback.format_exception(err))
        messages.put(("error", str(current) if current else "", cause, isinstance(err, InputError), details))
        connection.close()
        raise SystemExit(1) from None
    connection.close()
