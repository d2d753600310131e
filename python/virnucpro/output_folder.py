"""Output folders: what the pipeline may write, replace and remove there, checked before any work.

The rules that keep user data safe:
- an input that is (or links to, or lies inside) one of the outputs is refused;
- `--outdir` must be a folder we can write to, and not `/` or the home folder itself;
- a file at an output name that the project did not write is refused, never overwritten; ours are
  marked by our run.json, or while it is missing (writing, or after a failure) by
  `paths.OUTDIR_MARKER`; a symlink at an output name is replaced by the new file (its target is
  untouched);
- `--force` removes only what the project created: the final outputs when the folder's marker
  (`paths.OUTDIR_MARKER`) says they are ours, and in `work/` (marked by `parameters.json`) only the
  files named by `paths`; user files there and the folders they are in stay;
- temporary files of interrupted writes (`.tmp-*`, their writer gone) are removed;
- `run.json`, the completion marker, is removed before any other final output is rewritten;
- one command at a time writes a folder's final outputs, prepare tables or run work: a second one
  started into the same folder is refused (`folder_lock`; `embed-*` and `predict` write one file
  per shard and may share a folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from virnucpro import __version__
from virnucpro.atomic import (
    atomic_open,
    is_temporary_name,
    process_exists,
    remove_stale_temporaries,
    temporary_sibling,
)
from virnucpro.errors import InputError
from virnucpro.folder_lock import hold_folder
from virnucpro.paths import (
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

# Files the stages write into their folders, by name (anything else there is not ours).
_SHARD_FILE = re.compile(
    r"^shard_\d{5,}(" + "|".join(map(re.escape, (NUCLEOTIDE_SUFFIX, PROTEIN_SUFFIX))) + r")$"
)
_EMBEDDING_FILE = re.compile(
    r"^shard_\d{5,}(" + "|".join(map(re.escape, EMBEDDING_SUFFIXES.values())) + r")$"
)
_SCORES_FILE = re.compile(r"^shard_\d{5,}" + re.escape(SCORES_SUFFIX) + "$")


def usable_folder(folder: Path, option: str = "--outdir") -> None:
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


def stage_folder(outdir: Path, inputs: Iterable[str | Path], outputs: Iterable[Path]) -> None:
    """Before a stage that writes one file per input (embed-*, predict): the folder is usable, no
    input is among the outputs, and temporaries of interrupted writes there are removed."""
    usable_folder(outdir)
    refuse_inputs_among_outputs(inputs, outputs)
    remove_stale_temporaries(outdir)


# --- Final outputs (report, run) ---


def final_outputs_are_ours(outdir: Path) -> bool:
    """Whether the final-output names in `outdir` were written by this project (its marker, or a
    run.json of ours from a version before the marker)."""
    if (outdir / OUTDIR_MARKER).is_file():
        return True
    try:
        content = json.loads((outdir / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and "virnucpro" in (content.get("versions") or {})


def refuse_foreign_final_outputs(outdir: Path) -> None:
    """Refuse when a final-output name in `outdir` holds a file the project did not write."""
    if final_outputs_are_ours(outdir):
        return
    for name in FINAL_OUTPUTS:
        path = outdir / name
        if path.exists() and not path.is_symlink():
            raise InputError(
                f"{path}: exists and was not written by virnucpro (no {OUTDIR_MARKER} in {outdir}); "
                "refusing to overwrite it: move it or choose another --outdir"
            )


def begin_final_outputs(outdir: Path, inputs: Sequence[str | Path], command: str) -> None:
    """Before a command writes the final outputs: check, mark the folder as ours, and remove the
    completion marker (run.json) first, then the earlier final outputs, so that any final file
    present after a failure is one this command wrote whole."""
    outdir = Path(outdir)
    usable_folder(outdir)
    hold_folder(outdir)
    refuse_inputs_among_outputs(inputs, [outdir / name for name in FINAL_OUTPUTS])
    refuse_foreign_final_outputs(outdir)
    remove_stale_temporaries(outdir)
    with atomic_open(outdir / OUTDIR_MARKER, "w", encoding="utf-8") as out:
        json.dump({"written_by": f"virnucpro {command}", "version": __version__}, out)
        out.write("\n")
    for name in (RUN_JSON, *FINAL_OUTPUTS):
        _remove_file(outdir / name)


def finish_final_outputs(outdir: Path) -> None:
    """After run.json was written: it marks the outputs as ours from now on."""
    _remove_file(Path(outdir) / OUTDIR_MARKER)


def _remove_file(path: Path) -> None:
    """Remove a file or symlink (never a folder: a user's folder at an output name stays)."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --- prepare's folder ---


@contextlib.contextmanager
def no_trace_if_refused(folder: str | os.PathLike[str]) -> Iterator[None]:
    """A command refused (or failing) before it wrote a result leaves no trace, not even the output
    folder it created; a folder holding anything else than our marker stays as it is."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                if [entry.name for entry in folder.iterdir()] == [OUTDIR_MARKER]:
                    (folder / OUTDIR_MARKER).unlink()
                folder.rmdir()  # only when empty
        raise


def prepare_folder(
    outdir: Path, inputs: Sequence[str | Path], names: Sequence[str] = PREPARE_OUTPUTS
) -> None:
    """Before prepare writes into `outdir`: usable, inputs are not among the outputs, and outputs
    that exist there are ours (prepare replaces its shards/ folder as a whole)."""
    outdir = Path(outdir)
    usable_folder(outdir)
    hold_folder(outdir)
    refuse_inputs_among_outputs(inputs, [outdir / name for name in names])
    layout = PrepareLayout(outdir)
    foreign = _foreign_files(layout.shards, _SHARD_FILE)
    if foreign:
        raise InputError(
            f"{foreign[0]}: not a shard file of virnucpro prepare, but {layout.shards} would be replaced; "
            "refusing: move it or choose another --outdir"
        )
    remove_stale_temporaries(outdir)
    remove_stale_temporaries(layout.shards)


def _foreign_files(folder: Path, ours: re.Pattern) -> list[Path]:
    """Entries of `folder` that are not files named like ours (nor our temporaries)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if not (p.is_file() and not p.is_symlink() and (ours.match(p.name) or is_temporary_name(p.name)))
    )


# --- run's folder ---


def run_folder(layout: RunLayout, inputs: Sequence[str | Path]) -> None:
    """Before `virnucpro run` does any work: the folder is usable, no input is among its outputs,
    and what exists there under our names is ours (work/ holds our parameters.json or nothing)."""
    usable_folder(layout.outdir)
    hold_folder(layout.outdir)
    refuse_inputs_among_outputs(inputs, [*layout.final_outputs(), layout.work])
    refuse_foreign_final_outputs(layout.outdir)
    if layout.work.exists() and not layout.work.is_dir():
        raise InputError(f"{layout.work}: is a file, but virnucpro run keeps its work there; move it")
    if layout.work.is_dir() and not layout.parameters.is_file() and any(layout.work.iterdir()):
        raise InputError(
            f"{layout.work}: exists, holds files, and was not made by virnucpro run (no "
            f"{layout.parameters.name}); refusing to mix with it: move it or choose another --outdir"
        )


def remove_run_outputs(layout: RunLayout) -> None:
    """`--force`: remove what an earlier `virnucpro run` wrote into the folder, and nothing else."""
    if final_outputs_are_ours(layout.outdir):
        for name in (RUN_JSON, *FINAL_OUTPUTS, OUTDIR_MARKER):
            _remove_file(layout.outdir / name)
    if not layout.parameters.is_file():
        return
    prepare = layout.prepare
    _remove_matching(prepare.shards, _SHARD_FILE)
    for path in (prepare.chunk_frames, prepare.input_sequences, prepare.summary):
        _remove_file(path)
    for staging in prepare.folder.glob(f"{PREPARE_STAGING_PREFIX}*-*"):
        pid = staging.name.removeprefix(PREPARE_STAGING_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not process_exists(int(pid)) and staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
    _remove_matching(prepare.folder, None)
    _remove_matching(layout.embeddings, _EMBEDDING_FILE)
    _remove_matching(layout.scores, _SCORES_FILE)
    _remove_file(layout.parameters)
    _remove_matching(layout.work, None)


def _remove_matching(folder: Path, ours: re.Pattern | None) -> None:
    """Remove our files (named like `ours`) and stale temporaries in `folder`, then the folder
    itself if that left it empty; anything else in it stays."""
    if not folder.is_dir() or folder.is_symlink():
        return
    remove_stale_temporaries(folder)
    if ours is not None:
        for path in folder.iterdir():
            if ours.match(path.name) and path.is_file():
                _remove_file(path)
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # only when empty
