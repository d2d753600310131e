"""An embedding worker: a spawned process that embeds its shards on one device, and scores them when
the job says so.

It fixes its thread count (independent of the number of workers, so any number gives byte-identical
files), loads each model once (only when a file needs it), and keeps the device busy with three
threads:

- a reader thread, one shard ahead: reads the shard files, skips shards whose outputs are complete,
  reads kept float32 embeddings back where only the scores are missing, and tokenizes the rest (the
  tokenizers run in Rust without the GIL, or vectorised numpy);
- the main thread: pads batches into pinned buffers, issues them without waiting for the device,
  gathers the shard's vectors in one copy at its end, and scores both models' vectors with the
  classifier on the CPU (one thread: the scores do not depend on the device or the machine);
- a writer thread: writes each finished file atomically (embeddings first, the scores last, so a
  scores file marks a finished shard) while the next shard computes.

It reports to the parent through its own pipe: log records, progress, the file it starts, the error
it hits, and that it finished.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from virnucpro.embedding.jobs import EmbedJob, FileTask, ShardTask
from virnucpro.errors import InputError, VirNucProError, output_error
from virnucpro.files.ownership import track_all
from virnucpro.progress import log

# Signals that end a run: Ctrl-C (KeyboardInterrupt) and SIGTERM/SIGHUP (`Terminated`, see the CLI).
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
    """A file of a shard as the reader thread left it: tokenized when it must be embedded, its
    vectors when they were read back from a kept embedding file, neither when its output is
    complete (embedding without scoring)."""

    task: FileTask
    ids: list[str]
    table: object | None  # TokenTable
    vectors: np.ndarray | None  # float32, read back
    metadata: dict[str, str] | None  # the kept file's own metadata, with `vectors`
    source: dict[str, str]  # the shard's own hash (`source_sha256`): a changed shard recomputes


@dataclass
class PreparedShard:
    task: ShardTask
    files: list[PreparedFile]
    done: bool  # every output complete: nothing to do

    @property
    def rows(self) -> int:
        return sum(len(f.ids) for f in self.files)


class FileFailure(Exception):
    """An error while reading or writing `path` (raised in the worker's main thread)."""

    def __init__(self, path: Path, cause: BaseException):
        super().__init__(str(cause))
        self.path, self.cause = path, cause


class ShardReader:
    """The reader thread: reads and tokenizes the worker's shards, one ahead of the device. Yields
    the prepared shards in task order; an error is raised in the caller's thread, naming its file."""

    def __init__(self, tasks: list[ShardTask], job: EmbedJob, stop):
        from virnucpro.embedding.engine import load_tokenizer

        self.tokenizers = {kind: load_tokenizer(kind, m.model_path) for kind, m in job.models.items()}
        self.tasks, self.job, self.stop = tasks, job, stop
        self.ready: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self.run, name="virnucpro-reader", daemon=True)
        self.thread.start()

    def run(self) -> None:
        for shard in self.tasks:
            if self.stop.is_set():
                break
            self.current = shard.files[0]
            try:
                self.ready.put(self.prepare(shard))
            except BaseException as err:  # handed to the main thread, which fails the worker
                self.ready.put((self.current, err))
                return
        self.ready.put(None)

    def prepare(self, shard: ShardTask) -> PreparedShard:
        from virnucpro.files.checksums import file_sha256
        from virnucpro.files.embedding_files import is_complete
        from virnucpro.files.shards import read_shard

        read = {}
        for task in shard.files:
            self.current = task
            ids, sequences = read_shard(task.input)
            read[task.kind] = (task, ids, sequences, task.source_sha256 or file_sha256(task.input))
        sources = {kind: digest for kind, (_, _, _, digest) in read.items()}
        rows = len(next(iter(read.values()))[1])
        job = self.job
        if shard.scores is not None and shard.is_done(job, sources, rows):
            files = [PreparedFile(t, ids, None, None, None, {}) for t, ids, _, _ in read.values()]
            return PreparedShard(shard, files, done=True)
        files = []
        for kind, (task, ids, sequences, digest) in read.items():
            self.current = task
            source = {"source_sha256": digest}
            complete = is_complete(task.output, job.embedding_expected(kind, digest), len(ids))
            if complete and shard.scores is None:
                files.append(PreparedFile(task, ids, None, None, None, source))
                continue
            if complete and job.embedding_dtype == "float32":
                kept = self.read_kept(task, ids)
                if kept is not None:
                    files.append(PreparedFile(task, ids, None, kept.vectors, kept.metadata, source))
                    continue
            table = self.tokenizers[kind].encode_table(sequences)
            files.append(PreparedFile(task, ids, table, None, None, source))
        done = shard.scores is None and all(f.table is None for f in files)
        return PreparedShard(shard, files, done)

    @staticmethod
    def read_kept(task: FileTask, ids: list[str]):
        """The kept embeddings of `task`, or None when a page of the file is damaged (its checksum
        fails): the shard is embedded again instead."""
        from virnucpro.files.embedding_files import read_embeddings

        try:
            kept = read_embeddings(task.output)
        except (OSError, ValueError, KeyError) as err:
            log.warning("%s: damaged (%s); embedding its shard again", task.output, err)
            return None
        if kept.ids != ids:
            log.warning("%s: its ids are not those of %s; embedding it again", task.output, task.input.name)
            return None
        return kept

    def __iter__(self) -> Iterator[PreparedShard]:
        while (item := self.ready.get()) is not None:
            if isinstance(item, tuple):
                task, err = item
                raise FileFailure(task.input, err)
            yield item


class BackgroundWriter:
    """The writer thread: writes finished files atomically, in order, while the next shard computes.
    `submit` and `close` raise the first write error (disk full, ...) as one line."""

    def __init__(self):
        self.todo: queue.Queue = queue.Queue(maxsize=4)
        self.failure: FileFailure | None = None
        self.thread = threading.Thread(target=self.run, name="virnucpro-writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while (item := self.todo.get()) is not None:
            source, output, write = item
            if self.failure is not None:
                continue
            try:
                write()
            except OSError as err:
                self.failure = FileFailure(source, output_error(output, err))
            except BaseException as err:
                self.failure = FileFailure(source, err)

    def submit(self, source: Path, output: Path, write: Callable[[], None]) -> None:
        """Run `write` (which writes `output`, made from `source`) on the writer thread."""
        self.check()
        self.todo.put((source, output, write))

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        self.todo.put(None)
        self.thread.join()
        self.check()


class Scorer:
    """The classifier on the worker's CPU, and the scores file of a shard from its vectors."""

    def __init__(self, job: EmbedJob):
        from virnucpro.method.classifier import MLPClassifier

        scoring = job.scoring
        config = scoring.config
        self.model = MLPClassifier(config.input_dim, config.hidden_dim, config.num_classes)
        self.model.load_state_dict(scoring.state)
        self.model.eval()
        self.fields = scoring.fields
        self.input_dim = config.input_dim

    def score(self, shard: ShardTask, vectors: dict, metadata: dict) -> tuple:
        """(ids, score_others, score_virus, provenance) of a shard from both models' vectors."""
        from virnucpro.files.score_files import score_provenance
        from virnucpro.method.classifier import score_features

        (dnabert_ids, dnabert), (esm_ids, esm) = vectors["dnabert"], vectors["esm"]
        if dnabert_ids != esm_ids:
            raise InputError(
                f"{shard.name}: its nucleotide and protein shards hold other ids or another order "
                "(prepare writes them together; were they mixed from two runs?)"
            )
        if dnabert.shape[1] + esm.shape[1] != self.input_dim:
            raise InputError(
                f"{shard.name}: embeddings of {dnabert.shape[1]} (DNABERT-S) + {esm.shape[1]} (ESM-2) values, "
                f"but the classifier {self.fields['classifier']} takes {self.input_dim}; use the embedding "
                "models the classifier was trained with"
            )
        features = np.concatenate([dnabert, esm], axis=1)
        others, virus = score_features(self.model, features)
        return dnabert_ids, others, virus, score_provenance(self.fields, metadata)


def worker_main(index: int, device: str, tasks: list[ShardTask], job: EmbedJob, connection, stop) -> None:
    """A spawned worker: embed (and score) `tasks` in order on `device`, reporting through `connection`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (see pool.run_pool)
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
        from virnucpro.files.embedding_files import stored_metadata, write_embeddings
        from virnucpro.files.score_files import write_scores

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
        scorer = Scorer(job) if job.scoring is not None else None
        staging = HostStaging(torch.device(device))
        writer = BackgroundWriter()
        for prepared in ShardReader(tasks, job, stop):
            if stop.is_set():
                break
            shard = prepared.task
            current = shard.files[0].input
            messages.put(("start", str(current)))
            if prepared.done:
                for name in (
                    [shard.scores.name] if shard.scores else [f.task.output.name for f in prepared.files]
                ):
                    log.info("skipped %s (complete)", name)
                messages.put(("progress", prepared.rows))
                continue
            vectors, metadata = {}, {}
            for item in prepared.files:
                task = item.task
                current = task.input
                if item.table is None and item.vectors is None:  # complete; no scoring
                    log.info("skipped %s (complete)", task.output.name)
                    messages.put(("progress", len(item.ids)))
                    continue
                if item.vectors is not None:  # kept embeddings, read back to score
                    log.info("read %s back (kept) to score it", task.output.name)
                    vectors[task.kind], metadata[task.kind] = (item.ids, item.vectors), item.metadata
                    messages.put(("progress", len(item.ids)))
                    continue
                model = job.models[task.kind]
                if task.kind not in embedders:
                    loading = time.perf_counter()
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
                        "loaded %s on %s in %.1f s (%s, attention: %s)",
                        model.compared["model"],
                        device,
                        time.perf_counter() - loading,
                        job.precision,
                        embedders[task.kind].attention_kernel,
                    )
                embedder = embedders[task.kind]
                embedded = embed_table(
                    embedder,
                    item.table,
                    on_batch=lambda n: messages.put(("progress", n)),
                    should_stop=stop.is_set,
                    staging=staging,
                )
                recorded = {**model.recorded(tf32, embedder.attention_kernel), **item.source}
                vectors[task.kind] = (item.ids, embedded)
                metadata[task.kind] = stored_metadata(recorded, len(item.ids), embedded.shape[1])
                if job.writes_embeddings:
                    writer.submit(
                        task.input,
                        task.output,
                        _logged(
                            lambda t=task, i=item.ids, v=embedded, m=recorded: write_embeddings(
                                t.output, i, v, m, dtype=job.embedding_dtype
                            ),
                            f"embedded {task.output.name} ({len(item.ids)} sequences)",
                        ),
                    )
                else:
                    log.info("embedded %s with %s (not kept)", shard.name, model.compared["model"])
            if scorer is not None:
                current = shard.files[0].input
                ids, others, virus, provenance = scorer.score(shard, vectors, metadata)
                writer.submit(
                    current,
                    shard.scores,
                    _logged(
                        lambda s=shard, i=ids, o=others, v=virus, p=provenance: write_scores(
                            s.scores, i, o, v, p
                        ),
                        f"scored {shard.scores.name} ({len(ids)} frames)",
                    ),
                )
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


def _logged(write: Callable[[], None], message: str) -> Callable[[], None]:
    def run() -> None:
        write()
        log.info("%s", message)

    return run
