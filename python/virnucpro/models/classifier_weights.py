"""A classifier as the user names it: a converted folder, a `.safetensors` file beside its config,
an original `.pth`, or a hub id or URL of one of these (fetched through `sources`); loaded with what
identifies it in provenance records (name, revision, SHA-256 of the weights)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from virnucpro import __version__
from virnucpro.errors import InputError
from virnucpro.files.checksums import file_sha256
from virnucpro.method.classifier import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ClassifierConfig,
    MLPClassifier,
    load_classifier_folder,
    read_pth_classifier,
    save_classifier,
)
from virnucpro.models.sources import resolve_model


@dataclass(frozen=True)
class LoadedClassifier:
    model: MLPClassifier
    config: ClassifierConfig
    name: str  # as the user gave it (path, URL or hub id)
    revision: str  # resolved commit for hub models, "local" for files
    sha256: str  # of the weights file: identifies the exact weights in provenance records


def classifier_fields(classifier: LoadedClassifier) -> dict[str, str]:
    """The classifier's part of a scores file's provenance."""
    fields = {
        "classifier": classifier.name,
        "classifier_revision": classifier.revision,
        "classifier_sha256": classifier.sha256,
        "classifier_input_dim": str(classifier.config.input_dim),
        "version": __version__,
    }
    if (
        classifier.config.chunk_size is not None
    ):  # only when known: other classifiers' scores keep their bytes
        fields["classifier_chunk_size"] = str(classifier.config.chunk_size)
    return fields


def load_classifier(spec: str | Path, revision: str | None = None) -> LoadedClassifier:
    """A classifier given as a converted folder, a `.safetensors` file beside its config, an original
    `.pth`, or (through `virnucpro.models.sources`) a hub id or URL of one of these."""
    path = Path(spec)
    resolved_revision = "local"
    if not path.exists():
        resolved = resolve_model(str(spec), revision)
        path, resolved_revision = Path(resolved.path), resolved.revision
    weights = _weights_file(path)
    if weights.suffix == ".safetensors":
        model, config = load_classifier_folder(weights.parent)
    else:
        model, config = read_pth_classifier(weights, source=str(spec))
    return LoadedClassifier(model, config, str(spec), resolved_revision, file_sha256(weights))


def _weights_file(path: Path) -> Path:
    if path.is_dir():
        for candidate in (path / WEIGHTS_FILE, *sorted(path.glob("*.pth")), *sorted(path.glob("*.pt"))):
            if candidate.is_file():
                return candidate
        raise InputError(f"{path}: no {WEIGHTS_FILE} (with {CONFIG_FILE}) or .pth classifier in this folder")
    if path.suffix == ".safetensors" and not (path.parent / CONFIG_FILE).is_file():
        raise InputError(f"{path}: a classifier's .safetensors needs its {CONFIG_FILE} beside it")
    return path


def convert_classifier(
    source: str | Path, outdir: str | Path, revision: str | None = None
) -> ClassifierConfig:
    """Write any accepted classifier form as `model.safetensors` + `config.json` in `outdir`."""
    loaded = load_classifier(source, revision)
    config = replace(loaded.config, source=loaded.config.source or str(source))
    save_classifier(loaded.model, outdir, config)
    return config
