"""`virnucpro download-models`: fetch the default models once into a folder that offline compute
nodes can read.

Writes `DIR/dnabert-s/`, `DIR/esm2/` (the model files as resolved: hub snapshot, URL download or
local folder), `DIR/classifier-500/` and `DIR/classifier-300/` (converted to safetensors + JSON
config, so compute nodes never read a pickle), and `DIR/models.json` recording where each came
from and at which revision. A model already there from the same source and revision is kept.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from virnucpro.defaults import DEFAULT_DNABERT_MODEL, DEFAULT_ESM_MODEL, PUBLISHED_CLASSIFIERS
from virnucpro.errors import InputError
from virnucpro.files.atomic import atomic_open
from virnucpro.files.checksums import file_sha256
from virnucpro.models.classifier_weights import convert_classifier

log = logging.getLogger("virnucpro")

MANIFEST = "models.json"
DNABERT_FOLDER = "dnabert-s"
ESM_FOLDER = "esm2"


def classifier_folder(chunk_size: int) -> str:
    return f"classifier-{chunk_size}"


@dataclass(frozen=True)
class ModelSource:
    spec: str  # hub id, URL or local path
    revision: str | None = None


def _read_manifest(outdir: Path) -> dict:
    try:
        return json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_manifest(outdir: Path, manifest: dict) -> None:
    with atomic_open(outdir / MANIFEST, "w", encoding="utf-8", newline="\n") as out:
        json.dump(manifest, out, indent=2, sort_keys=True)
        out.write("\n")


def _is_current(manifest: dict, entry: dict, outdir: Path) -> bool:
    """The folder is there, fetched from the same source at the same revision."""
    earlier = manifest.get(entry["path"], {})
    same = all(earlier.get(k) == entry[k] for k in ("source", "revision"))
    return same and (outdir / entry["path"]).is_dir()


def _replace_folder(staging: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def _fetch(source: ModelSource, outdir: Path, folder: str, manifest: dict, fill) -> None:
    """Resolve `source` and, unless `outdir/folder` is already current, let `fill(path, staging)`
    write the folder in a staging place (it returns extra manifest fields), then swap it in."""
    from virnucpro.models.sources import resolve_model

    resolved = resolve_model(source.spec, source.revision)
    entry = {"source": source.spec, "revision": resolved.provenance, "path": folder}
    if _is_current(manifest, entry, outdir):
        log.info("download-models: %s already in %s, kept", source.spec, outdir / folder)
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=outdir))
    try:
        extra = fill(resolved.path, staging)
        _replace_folder(staging, outdir / folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest[folder] = {**entry, **extra}
    _write_manifest(outdir, manifest)
    log.info("download-models: %s (%s) -> %s", source.spec, resolved.provenance, outdir / folder)


def _copy_model(source: ModelSource, outdir: Path, folder: str, manifest: dict) -> None:
    def copy(path: Path, staging: Path) -> dict:
        if path.is_dir():
            # Hidden entries (`.cache/` of hub snapshots) are bookkeeping, not model files.
            shutil.copytree(path, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        else:
            shutil.copy2(path, staging / path.name)
        return {}

    _fetch(source, outdir, folder, manifest, copy)


def _convert(source: ModelSource, outdir: Path, folder: str, manifest: dict) -> None:
    def convert(path: Path, staging: Path) -> dict:
        config = convert_classifier(path, staging)
        return {"input_dim": config.input_dim, "sha256": file_sha256(staging / "model.safetensors")}

    _fetch(source, outdir, folder, manifest, convert)


def download_models(
    outdir: str | Path,
    dnabert: ModelSource = ModelSource(DEFAULT_DNABERT_MODEL),
    esm: ModelSource = ModelSource(DEFAULT_ESM_MODEL),
    classifiers: dict[int, ModelSource] | None = None,
) -> dict:
    """Fetch every model into `outdir`; returns the manifest (also in `outdir/models.json`)."""
    outdir = Path(outdir)
    if classifiers is None:
        classifiers = {size: ModelSource(url) for size, url in PUBLISHED_CLASSIFIERS.items()}
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{outdir}: cannot write the output folder ({err.strerror})") from None
    manifest = _read_manifest(outdir)
    _copy_model(dnabert, outdir, DNABERT_FOLDER, manifest)
    _copy_model(esm, outdir, ESM_FOLDER, manifest)
    for size, source in sorted(classifiers.items()):
        _convert(source, outdir, classifier_folder(size), manifest)
    sizes = sorted(classifiers)
    log.info(
        "download-models: done; on the compute nodes run with --dnabert-model %s --esm-model %s%s",
        outdir / DNABERT_FOLDER,
        outdir / ESM_FOLDER,
        "".join(f" --classifier {outdir / classifier_folder(s)} (chunk size {s})" for s in sizes),
    )
    return manifest
