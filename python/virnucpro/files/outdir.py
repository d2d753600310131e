"""Output folders: what the pipeline may write, replace and remove there, checked before any work.

The rules that keep user data safe:
- an input that is (or links to, or lies inside) one of the outputs is refused;
- `--outdir` must be a folder we can write to, and not `/` or the home folder itself;
- a file is the project's only when it matches its folder's record (`ownership`: every file a
  command wrote there, with its size and SHA-256); a rerun, `--force` and `report` replace or
  remove only those, and any other file at an output name is refused, named, and left as it is
  (a symlink at an output name is replaced by the new file; its target is untouched); a record that
  is not ours makes the whole folder foreign;
- every check runs before anything is removed;
- temporary files of interrupted writes (`.tmp-*`, their writer gone) are removed;
- `run.json`, the completion marker, is removed before any other final output is rewritten;
- one command at a time writes a folder's final outputs, prepare tables or run work: a second one
  started into the same folder is refused (`files.lock`; `embed-*` and `predict` write one file
  per shard and may share a folder).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from virnucpro.errors import InputError, note_output_folder
from virnucpro.files.atomic import (
    is_temporary_name,
    process_exists,
    remove_stale_temporaries,
    temporary_sibling,
)
from virnucpro.files.layout import (
    EMBEDDING_SUFFIXES,
    FINAL_OUTPUTS,
    NUCLEOTIDE_SUFFIX,
    OUTDIR_MARKER,
    PREPARE_OUTPUTS,
    PREPARE_STAGING_PREFIX,
    PROTEIN_SUFFIX,
    RUN_JSON,
    SCORES_SUFFIX,
    PrepareLayout,
    RunLayout,
    display_name,
    is_stream,
)
from virnucpro.files.lock import lock_folder
from virnucpro.files.ownership import Record, track

# Files the stages write into their folders, by name (anything else there is not ours).
_SHARD_FILE = re.compile(
    r"^shard_\d{5,}(" + "|".join(map(re.escape, (NUCLEOTIDE_SUFFIX, PROTEIN_SUFFIX))) + r")$"
)
_EMBEDDING_FILE = re.compile(
    r"^shard_\d{5,}(" + "|".join(map(re.escape, EMBEDDING_SUFFIXES.values())) + r")$"
)
_SCORES_FILE = re.compile(r"^shard_\d{5,}" + re.escape(SCORES_SUFFIX) + "$")


def make_writable_folder(folder: Path, option: str = "--outdir") -> None:
    """Create `folder` if needed and check that files can be created in it (one line if not)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {folder}: is a file, not a folder")
    resolved = folder.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise InputError(
            f"{option} {folder}: refusing to write into {'/' if resolved == Path(resolved.anchor) else 'your home folder'} "
            "itself; give a folder of its own (created if missing)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary_sibling(folder / "write-check").unlink()
    except OSError as err:
        raise InputError(f"{folder}: cannot write the output folder ({err.strerror})") from None
    note_output_folder(folder)


def refuse_inputs_among_outputs(inputs: Iterable[str | Path], outputs: Iterable[Path]) -> None:
    """Refuse an input that is, links to, or lies inside one of `outputs` (files or folders).

    Linear in inputs + outputs: outputs are indexed by their resolved path and by (device, inode),
    and each input is looked up with its resolved path and the folders above it (a stage given
    thousands of shards against thousands of outputs once compared every pair)."""
    by_path: dict[Path, Path] = {}
    by_identity: dict[tuple[int, int], Path] = {}
    for output in map(Path, outputs):
        by_path.setdefault(output.resolve(), output)
        identity = _identity(output)
        if identity is not None:
            by_identity.setdefault(identity, output)
    for raw in inputs:
        if is_stream(raw):
            continue
        path = Path(raw)
        real = path.resolve()
        output = by_path.get(real)
        inside = False
        if output is None:
            identity = _identity(path)
            output = by_identity.get(identity) if identity is not None else None
        if output is None:
            output = next((by_path[parent] for parent in real.parents if parent in by_path), None)
            inside = output is not None
        if output is not None:
            how = "is" if path.absolute() == output.absolute() and not path.is_symlink() else "links to"
            raise InputError(
                f"{display_name(raw)}: this input {'lies inside' if inside else how} {output}, which "
                "this command writes or replaces; move the input or choose another --outdir "
                "(nothing was written)"
            )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def start_folder_record(folder: Path, replaced: Iterable[Path], command: str) -> Record:
    """The checks before a command writes into `folder`: the record there is ours (or none yet),
    and each of `replaced` that exists is a file of ours (refused, named, otherwise). Then the
    record is started, the folder's writes are recorded from now on, and temporaries of
    interrupted writes are removed."""
    record = Record(folder)
    record.refuse_foreign(replaced, command)
    record.create()
    track(folder)
    remove_stale_temporaries(folder)
    return record


def claim_stage_outputs(
    outdir: Path, inputs: Iterable[str | Path], outputs: Iterable[Path], command: str
) -> None:
    """Before a stage that writes one file per input (embed-*, predict): the folder is usable, no
    input is among the outputs, and every output that exists there is ours (kept when complete,
    replaced otherwise)."""
    outputs = list(outputs)
    make_writable_folder(outdir)
    refuse_inputs_among_outputs(inputs, outputs)
    start_folder_record(outdir, outputs, command)


# --- Final outputs (report, run, calibrate) ---


def check_outputs(outdir: Path, inputs: Sequence[str | Path], names: Sequence[str], command: str) -> None:
    """Refuse, before any work, what would stop `command` from writing `names` into `outdir`."""
    outdir = Path(outdir)
    make_writable_folder(outdir)
    lock_folder(outdir)
    refuse_inputs_among_outputs(inputs, [outdir / name for name in names])
    Record(outdir).refuse_foreign([outdir / name for name in names], command)


def begin_outputs(
    outdir: Path, inputs: Sequence[str | Path], names: Sequence[str], completion: str, command: str
) -> None:
    """Before `command` writes `names` (`completion`, the file that marks them complete, among
    them): every check, then the completion marker is removed first and the earlier outputs after
    it, so that any output present after a failure is one this command wrote whole."""
    outdir = Path(outdir)
    check_outputs(outdir, inputs, names, command)
    record = start_folder_record(outdir, [outdir / name for name in names], command)
    removed = [outdir / name for name in (completion, *names)]
    for path in removed:
        _remove_file(path)
    record.forget(removed)


def check_final_outputs(outdir: Path, inputs: Sequence[str | Path], command: str) -> None:
    check_outputs(outdir, inputs, FINAL_OUTPUTS, command)


def begin_final_outputs(outdir: Path, inputs: Sequence[str | Path], command: str) -> None:
    """Before a command writes the final outputs (run.json, written last, is removed first)."""
    begin_outputs(outdir, inputs, FINAL_OUTPUTS, RUN_JSON, command)


def _remove_file(path: Path) -> None:
    """Remove a file or symlink (never a folder: a user's folder at an output name stays)."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def no_trace_if_refused(folder: str | os.PathLike[str]) -> Iterator[None]:
    """A command refused (or failing) before it wrote a result leaves no trace, not even the output
    folder it created; a folder holding anything else than our record stays as it is."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        yield
    except BaseException:
        if created:
            remove_if_only_record(folder)
        raise


def remove_if_only_record(folder: Path) -> None:
    """Remove `folder` when it holds nothing but its record (whose files are then all gone)."""
    with contextlib.suppress(OSError):
        if [entry.name for entry in folder.iterdir()] == [OUTDIR_MARKER]:
            (folder / OUTDIR_MARKER).unlink()
        folder.rmdir()  # only when empty


# --- prepare's folder ---


def claim_prepare_outputs(
    outdir: Path, inputs: Sequence[str | Path], names: Sequence[str] = PREPARE_OUTPUTS
) -> Record:
    """Before prepare writes into `outdir`: usable, inputs are not among the outputs, and outputs
    that exist there are ours (prepare replaces its shards/ folder as a whole)."""
    outdir = Path(outdir)
    make_writable_folder(outdir)
    lock_folder(outdir)
    refuse_inputs_among_outputs(inputs, [outdir / name for name in names])
    layout = PrepareLayout(outdir)
    foreign = _foreign_files(layout.shards, _SHARD_FILE)
    if foreign:
        raise InputError(
            f"{foreign[0]}: not a shard file of virnucpro prepare, but {layout.shards} would be replaced; "
            "refusing: move it or choose another --outdir"
        )
    record = start_folder_record(outdir, prepare_files(layout), "virnucpro prepare")
    remove_stale_temporaries(layout.shards)
    return record


def prepare_files(layout: PrepareLayout) -> list[Path]:
    """The files of a prepare folder that a new prepare replaces: its tables and every shard file."""
    shards = layout.shards
    names = sorted(p for p in shards.iterdir() if _SHARD_FILE.match(p.name)) if _is_folder(shards) else []
    return [layout.chunk_frames, layout.input_sequences, layout.summary, *names]


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _foreign_files(folder: Path, ours: re.Pattern) -> list[Path]:
    """Entries of `folder` that are not files named like ours (nor our temporaries)."""
    if not _is_folder(folder):
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if not (p.is_file() and not p.is_symlink() and (ours.match(p.name) or is_temporary_name(p.name)))
    )


# --- run's folder ---


def run_files(layout: RunLayout) -> list[tuple[Path, list[Path]]]:
    """Per folder of a run that has a record of its own: the files a rerun may replace and
    --force removes there (what the record lists, and every name a stage writes)."""
    prepare = layout.prepare
    named = {
        layout.outdir: [
            *layout.final_outputs(),
            layout.parameters,
            layout.hashes,
            layout.request_fingerprint,
        ],
        prepare.folder: prepare_files(prepare) if _is_folder(prepare.folder) else [],
        layout.embeddings: _named_like(layout.embeddings, _EMBEDDING_FILE),
        layout.scores: _named_like(layout.scores, _SCORES_FILE),
    }
    found = []
    for folder, files in named.items():
        if folder != layout.outdir and not _is_folder(folder):
            continue
        recorded = Record(folder).recorded_files()
        found.append((folder, sorted(set(files) | set(recorded))))
    return found


def _named_like(folder: Path, pattern: re.Pattern) -> list[Path]:
    return sorted(p for p in folder.iterdir() if pattern.match(p.name)) if _is_folder(folder) else []


def claim_run_outdir(layout: RunLayout, inputs: Sequence[str | Path]) -> None:
    """Before `virnucpro run` does any work: the folder is usable, no input is among its outputs,
    and every file at one of its output names (final outputs and work/) is ours."""
    make_writable_folder(layout.outdir)
    lock_folder(layout.outdir)
    refuse_inputs_among_outputs(inputs, [*layout.final_outputs(), layout.work])
    if layout.work.exists() and not _is_folder(layout.work):
        raise InputError(f"{layout.work}: is not a folder, but virnucpro run keeps its work there; move it")
    if _is_folder(layout.work) and not layout.parameters.is_file() and any(layout.work.iterdir()):
        raise InputError(
            f"{layout.work}: exists, holds files, and was not made by virnucpro run (no "
            f"{layout.parameters.name}); refusing to mix with it: move it or choose another --outdir"
        )
    # What a rerun replaces whatever it finds: the final outputs, and the embedding and score files
    # (a file there that is not ours is refused, even one complete enough to keep). The prepare
    # folder is checked when prepare is to run again (`check_prepare_replaceable`).
    for folder, files in run_files(layout):
        if folder != layout.prepare.folder:
            Record(folder).refuse_foreign(files, "virnucpro run")


def check_prepare_replaceable(layout: PrepareLayout) -> None:
    """Refuse when prepare would replace a file in its folder that is not ours."""
    if _is_folder(layout.folder):
        Record(layout.folder).refuse_foreign(prepare_files(layout), "virnucpro prepare")


def remove_run_outputs(layout: RunLayout) -> None:
    """`--force`: remove what an earlier `virnucpro run` wrote into the folder, and nothing else.
    Every file is checked before the first one is removed."""
    folders = run_files(layout)
    for folder, files in folders:
        Record(folder).refuse_foreign(files, "virnucpro run --force")
    prepare = layout.prepare
    for folder, files in reversed(folders):  # work/ first, the final outputs last
        for path in files:
            _remove_file(path)
        record = Record(folder)
        record.forget(files)
        remove_stale_temporaries(folder)
        if folder == prepare.folder:
            remove_dead_staging(folder)
            remove_stale_temporaries(prepare.shards)
            with contextlib.suppress(OSError):
                prepare.shards.rmdir()  # only when empty
        if folder != layout.outdir:
            remove_if_only_record(folder)
    remove_stale_temporaries(layout.work)
    with contextlib.suppress(OSError):
        layout.work.rmdir()  # only when empty


def remove_dead_staging(folder: Path) -> None:
    """Delete staging folders left by a prepare that was killed (its process no longer exists)."""
    for staging in folder.glob(f"{PREPARE_STAGING_PREFIX}*-*"):
        pid = staging.name.removeprefix(PREPARE_STAGING_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not process_exists(int(pid)) and _is_folder(staging):
            shutil.rmtree(staging, ignore_errors=True)
