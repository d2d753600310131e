"""The embedding worker pool: one spawned worker per device, shard files dealt round-robin.

Plan: input files sorted by name, file i to worker i mod N (same files and N, same plan). Each
worker fixes its thread count (independent of N, so any N gives byte-identical files), loads its
model once (only when a file needs it), and for each of its files skips it when the output is
complete (`embedding_files.is_complete` with this run's model, revision, precision and pooling),
else reads, batches, embeds, restores shard order and writes atomically.

Workers report to the parent through a pipe each: log records, progress, the file they start, the
error they hit, and that they finished. A worker that raises, or dies without saying it finished
(SIGKILL, out of host memory), fails the command with the file and the cause; the other workers
stop after their current batch, and every finished file stays for the next run to resume from.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from virnucpro import __version__
from virnucpro.defaults import DEFAULT_BATCH_SIZE, DEFAULT_THREADS_PER_WORKER, DEFAULT_TOKENS_PER_BATCH
from virnucpro.embedding.engine import (
    KINDS,
    POOLING,
    PRECISIONS,
    check_model_folder,
)
from virnucpro.errors import InputError, VirNucProError
from virnucpro.progress import log, progress_task
from virnucpro.shards import shard_of

STOP_GRACE_SECONDS = 30.0  # for the other workers to reach a batch boundary after a failure
OUTPUT_SUFFIX = {"dnabert": ".dnabert.parquet", "esm": ".esm.parquet"}


@dataclass(frozen=True)
class EmbedJob:
    """What every worker needs besides its files and device (pickled to spawned workers)."""

    kind: str
    model_path: str
    metadata: dict[str, str]  # compared by resume: model, revision, precision, pooling
    precision: str
    batch_size: int
    tokens_per_batch: int
    threads: int


@dataclass(frozen=True)
class FileTask:
    input: Path
    output: Path


def output_path(kind: str, input_path: Path, outdir: Path) -> Path:
    try:
        name = shard_of(input_path)
    except ValueError as err:
        raise InputError(
            f"{input_path}: not a shard file (expected shard_NNNNN.*, as prepare writes)"
        ) from err
    return outdir / f"{name}{OUTPUT_SUFFIX[kind]}"


def assign_round_robin(files: Sequence[Path], workers: int) -> list[list[Path]]:
    """Files sorted by name (then full path), file i to worker i mod `workers`."""
    ordered = sorted(files, key=lambda p: (Path(p).name, str(p)))
    return [ordered[w::workers] for w in range(workers)]


def resolve_devices(devices: str, workers: int) -> list[str]:
    """One torch device name per worker: `cpu` (`workers` of them), `cuda` (every visible GPU),
    `cuda:0,2` (those), or `auto` (every visible GPU, else `workers` CPU workers)."""
    import torch

    spec = devices.strip().lower()
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if spec == "cpu":
        return ["cpu"] * workers
    # device_count() queries the driver without creating a CUDA context in this process.
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec == "auto":
        return [f"cuda:{i}" for i in range(count)] if count else ["cpu"] * workers
    if spec == "cuda" or spec.startswith("cuda:"):
        if not count:
            raise InputError(f"--devices {devices}: no CUDA device is visible (CUDA_VISIBLE_DEVICES, driver)")
        if spec == "cuda":
            return [f"cuda:{i}" for i in range(count)]
        try:
            indices = [int(part) for part in spec.removeprefix("cuda:").split(",")]
        except ValueError:
            raise InputError(f"--devices {devices}: expected cuda:I[,J...] with GPU numbers") from None
        bad = [i for i in indices if not 0 <= i < count]
        if bad or len(set(indices)) != len(indices):
            raise InputError(
                f"--devices {devices}: {count} GPU(s) visible, numbered 0..{count - 1}, each once"
            )
        return [f"cuda:{i}" for i in indices]
    raise InputError(f"--devices {devices}: use auto, cpu, cuda or cuda:I[,J...]")


def count_records(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.startswith(b">"))


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
) -> list[Path]:
    """Embed shard FASTA files into `outdir/shard_NNNNN.{dnabert,esm}.parquet`; returns the output
    paths in input order. Complete outputs are kept; a failure raises `VirNucProError`."""
    from virnucpro.models.sources import resolve_model

    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r}")
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision}: use one of {', '.join(PRECISIONS)}")
    if batch_size < 1 or (tokens_per_batch is not None and tokens_per_batch < 1) or threads_per_worker < 1:
        raise InputError("--batch-size, --tokens-per-batch and --threads-per-worker must be at least 1")
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input shard files given")
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    outdir = Path(outdir)
    outputs = [output_path(kind, p, outdir) for p in paths]
    if len(set(outputs)) != len(outputs):
        raise InputError("two input files are named after the same shard; their outputs would collide")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{outdir}: cannot create the output folder ({err.strerror})") from err

    resolved = resolve_model(model, revision)
    check_model_folder(kind, resolved.path)  # here, not in N workers after start-up
    job = EmbedJob(
        kind=kind,
        model_path=str(resolved.path),
        metadata={
            "model": resolved.name,
            "revision": resolved.provenance,
            "precision": precision,
            "pooling": POOLING[kind],
        },
        precision=precision,
        batch_size=batch_size,
        tokens_per_batch=tokens_per_batch or DEFAULT_TOKENS_PER_BATCH,
        threads=threads_per_worker,
    )
    device_names = resolve_devices(devices, workers)
    by_input = dict(zip(paths, outputs, strict=True))
    plan = [
        [FileTask(p, by_input[p]) for p in files]
        for files in assign_round_robin(paths, min(len(device_names), len(paths)))
    ]
    total = sum(count_records(p) for p in paths)
    log.info(
        "embedding %d file(s), %d sequences, with %s (%s) on %d worker(s): %s",
        len(paths),
        total,
        resolved.name,
        resolved.provenance,
        len(plan),
        ", ".join(device_names[: len(plan)]),
    )
    run_pool(job, plan, device_names, total, quiet)
    return outputs


def run_pool(job: EmbedJob, plan: list[list[FileTask]], device_names: list[str], total: int, quiet: bool):
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
    deadline = float("inf")
    with progress_task(f"embedding ({job.kind})", total=total, quiet=quiet, unit="sequences") as bar:

        def handle(index: int, message) -> None:
            nonlocal failure
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

        try:
            for index, process in enumerate(processes):
                process.start()
                channels[index][1].close()  # the worker holds the sending end; EOF means it is gone
                log.info(
                    "worker %d started (pid %d, %s): %s",
                    index + 1,
                    process.pid,
                    device_names[index],
                    ", ".join(shard_of(t.input) for t in plan[index]),
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
            stop.set()
            for process in processes:
                if process.is_alive():
                    process.terminate()
            raise
        finally:
            for process in processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
            for receiver, _ in channels:
                receiver.close()
    if failure is not None:
        raise VirNucProError(f"{failure}; finished files are kept, rerun the same command to resume")


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

    def put(self, message) -> None:
        self.connection.send(message)

    put_nowait = put


def worker_main(index: int, device: str, tasks: list[FileTask], job: EmbedJob, connection, stop) -> None:
    """A spawned worker: embed `tasks` in order on `device`, reporting through `connection`."""
    messages = _Channel(connection)
    handler = logging.handlers.QueueHandler(messages)
    handler.addFilter(_WorkerPrefix(f"worker {index + 1}: "))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    current: Path | None = None
    try:
        embedder = None
        import torch

        from virnucpro.checksums import file_sha256
        from virnucpro.embedding.engine import embed_sequences, load_embedder
        from virnucpro.embedding_files import is_complete, write_embeddings
        from virnucpro.shards import read_shard

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
        metadata = {**job.metadata, "version": __version__, "tf32": tf32}
        for task in tasks:
            if stop.is_set():
                break
            current = task.input
            messages.put(("start", str(task.input)))
            ids, sequences = read_shard(task.input)
            name = shard_of(task.input)
            # The shard's bytes identify what the file was computed from: a changed shard recomputes.
            source = {"source_sha256": file_sha256(task.input)}
            if is_complete(task.output, {**job.metadata, **source}, len(ids)):
                log.info("skipped %s (complete)", name)
                messages.put(("progress", len(ids)))
                continue
            if embedder is None:
                embedder = load_embedder(
                    job.kind, job.model_path, device, job.precision, job.batch_size, job.tokens_per_batch
                )
                log.info("loaded %s on %s (%s)", job.metadata["model"], device, job.precision)
            vectors = embed_sequences(
                embedder,
                sequences,
                on_batch=lambda n: messages.put(("progress", n)),
                should_stop=stop.is_set,
            )
            write_embeddings(task.output, ids, vectors, {**metadata, **source})
            log.info("embedded %s (%d sequences)", name, len(ids))
        current = None
        messages.put(("finished",))
    except BaseException as err:  # reported to the parent, which fails the command
        if isinstance(err, VirNucProError):
            cause = str(err)
        else:
            cause = f"{type(err).__name__}: {err}"
            log.error("%s", traceback.format_exc().rstrip())
        messages.put(("error", str(current) if current else "", cause))
        connection.close()
        raise SystemExit(1) from None
    connection.close()
