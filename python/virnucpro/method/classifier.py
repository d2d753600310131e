"""The VirNucPro classifier: an MLP over the concatenated DNABERT-S and ESM-2 mean embeddings.

Stored as `model.safetensors` (the original module's state-dict key names) plus `config.json`.
The published `.pth` files (whole pickled modules) are read without executing pickle code and can
be converted once with `convert_classifier`; every command accepts either form.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from virnucpro.errors import InputError
from virnucpro.files.atomic import atomic_path
from virnucpro.files.torch_archives import check_torch_archive

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ClassifierConfig:
    input_dim: int  # dnabert_dim + esm_dim
    hidden_dim: int = 512
    num_classes: int = 2  # class 0 = others, class 1 = virus
    dnabert_dim: int | None = None
    esm_dim: int | None = None
    source: str = ""  # where the weights came from (file, URL, training run)
    chunk_size: int | None = None  # the chunk length (bp) it was trained on, when known


# The published classifiers are named after the chunk length they were trained on.
_PUBLISHED_NAME = re.compile(r"^(\d+)_model\.pth$")


def check_chunk_size(config: ClassifierConfig, chunk_size: int, name: str) -> None:
    """Refuse a classifier trained on chunks of another length than the ones to score."""
    if config.chunk_size is not None and config.chunk_size != chunk_size:
        raise InputError(
            f"{name}: a classifier for {config.chunk_size} bp chunks, but the chunks are {chunk_size} bp "
            f"(--chunk-size); give the {chunk_size} bp classifier or --chunk-size {config.chunk_size}"
        )


class MLPClassifier(nn.Module):
    """Linear, BatchNorm1d, ReLU, Dropout(0.5), Linear: the original's layers and attribute names."""

    def __init__(self, input_dim: int, hidden_dim: int = 512, num_classes: int = 2):
        super().__init__()
        self.hidden_layer = nn.Linear(input_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.dropout = nn.Dropout(0.5)
        self.output_layer = nn.Linear(hidden_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn1(self.hidden_layer(features)))
        return self.output_layer(self.dropout(hidden))


# Rows per forward pass, the last batch padded with zeros to the same shape: matrix kernels pick
# their blocking by the number of rows, so a fixed shape keeps each row's score independent of the
# rows scored with it (of the shard size). 256 is also the original's prediction batch.
SCORE_BATCH = 256
# Torch's CPU matmuls give other last digits with other thread counts (seen: 1 and 3 threads agree,
# 2, 4 and 8 each differ), so scores are computed with one thread whatever the machine, the task's
# cores or the worker that scores: the same embeddings give the same bytes everywhere.
SCORE_THREADS = 1


@contextlib.contextmanager
def torch_threads(count: int):
    """Torch's intra-op thread count set to `count` for the block (process-wide: callers score from
    the one thread that runs torch work)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def score_features(model: nn.Module, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (others, virus) as float32, the classifier in eval mode on the CPU."""
    model.eval()
    chunks = []
    batch = torch.zeros((SCORE_BATCH, features.shape[1]), dtype=torch.float32)
    with torch_threads(SCORE_THREADS):
        for start in range(0, features.shape[0], SCORE_BATCH):
            rows = features[start : start + SCORE_BATCH]
            batch.zero_()
            batch[: len(rows)] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
            chunks.append(torch.softmax(model(batch), dim=1)[: len(rows)].numpy().copy())
    probabilities = np.concatenate(chunks) if chunks else np.zeros((0, 2), dtype=np.float32)
    return probabilities[:, 0].astype(np.float32), probabilities[:, 1].astype(np.float32)


def save_classifier(model: MLPClassifier, outdir: str | Path, config: ClassifierConfig) -> None:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(outdir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(outdir / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(asdict(config), indent=2, sort_keys=True) + "\n", encoding="utf-8")


# A classifier's widths: far above the published ones (3328 in, 512 hidden), far below a size that
# could not be built.
MAX_WIDTH = 1 << 20


def read_config(path: Path) -> ClassifierConfig:
    """A classifier's config.json, every field checked (one line naming the file and the field)."""
    from virnucpro.defaults import CHUNK_SIZES
    from virnucpro.files.json_files import check_keys, is_count, read_json_object

    raw = read_json_object(path)
    fields = set(ClassifierConfig.__dataclass_fields__)
    check_keys(raw, {"input_dim"}, fields - {"input_dim"}, f"{path}")
    config = ClassifierConfig(**raw)
    for name in ("input_dim", "hidden_dim", "dnabert_dim", "esm_dim"):
        value = getattr(config, name)
        if not (value is None and name in ("dnabert_dim", "esm_dim")) and not (
            is_count(value) and 1 <= value <= MAX_WIDTH
        ):
            raise InputError(f"{path}: {name} is {value!r:.40}, not a whole number from 1 to {MAX_WIDTH}")
    if config.num_classes != 2 or isinstance(config.num_classes, bool):
        raise InputError(f"{path}: num_classes is {config.num_classes!r:.40}, not 2 (others, virus)")
    if (
        None not in (config.dnabert_dim, config.esm_dim)
        and config.dnabert_dim + config.esm_dim != config.input_dim
    ):
        raise InputError(f"{path}: dnabert_dim + esm_dim is not input_dim")
    if config.chunk_size is not None and not (
        is_count(config.chunk_size) and config.chunk_size in CHUNK_SIZES
    ):
        raise InputError(f"{path}: chunk_size is {config.chunk_size!r:.40}, not 300, 500 or null")
    if not isinstance(config.source, str):
        raise InputError(f"{path}: source is not text")
    return config


def load_classifier_folder(folder: str | Path) -> tuple[MLPClassifier, ClassifierConfig]:
    """Load a classifier saved by `save_classifier`, in eval mode on the CPU."""
    folder = Path(folder)
    config = read_config(folder / CONFIG_FILE)
    try:
        # The weights' own shapes first: the layers are built only at the size the file holds.
        from safetensors import safe_open

        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as weights:
            names = set(weights.keys())  # safe_open is not a mapping
            shape = (
                weights.get_slice("hidden_layer.weight").get_shape()
                if "hidden_layer.weight" in names
                else None
            )
        if shape != [config.hidden_dim, config.input_dim]:
            raise InputError(
                f"{folder}: {WEIGHTS_FILE} holds a first layer of shape {shape}, but {CONFIG_FILE} makes it "
                f"{[config.hidden_dim, config.input_dim]} (weights and config of different classifiers?)"
            )
        model = MLPClassifier(config.input_dim, config.hidden_dim, config.num_classes)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except OSError as err:
        raise InputError(f"{folder}: cannot read the classifier ({err.strerror}: {err.filename})") from None
    except (ValueError, TypeError, RuntimeError, SafetensorError) as err:
        raise InputError(f"{folder}: not a valid classifier folder ({err})") from None
    return model.eval(), config


# --- Reading the published `.pth` files and resolving a classifier given in any form. ---


# The published files hold a whole module pickled from the training script, whose class lives in
# `__main__`. They are read with torch's weights-only unpickler, which builds only the classes on
# this allow-list; `__main__.MLPClassifier` becomes a harmless stand-in that only holds submodules.
# Anything else in the file (a command, an unknown class) is refused before it can run.
class _PickledMLP(nn.Module):
    """Stand-in for the training script's `__main__.MLPClassifier`: state only, no code of its own."""


_PTH_ALLOWED_GLOBALS = [
    (_PickledMLP, "__main__.MLPClassifier"),
    nn.Linear,
    nn.BatchNorm1d,
    nn.Dropout,
]
# The published classifiers are 768 (DNABERT-S) + 2560 (ESM-2 3B) wide.
_PUBLISHED_WIDTHS = {768 + 2560: (768, 2560)}
# A 3328x512 MLP holds 6.8 MB of float32 tensors; a .pth declaring far more is not a classifier.
PTH_MAX_BYTES = 64 << 20
_STATE_KEYS = (
    "hidden_layer.weight",
    "hidden_layer.bias",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "output_layer.weight",
    "output_layer.bias",
)


def read_pth_classifier(
    path: str | Path, source: str | None = None
) -> tuple[MLPClassifier, ClassifierConfig]:
    """Load an original `.pth` classifier (a pickled module or a state dict) without running its code."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: classifier file not found")
    check_torch_archive(path, PTH_MAX_BYTES, "a VirNucPro classifier")
    try:
        with torch.serialization.safe_globals(_PTH_ALLOWED_GLOBALS):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: classifier file not found") from None
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{path}: refused to load: not a plain VirNucPro classifier (weights-only loading: {first_line})"
        ) from None
    except Exception as err:  # torch.load fails in many ways on files that are not its format
        raise InputError(
            f"{path}: not a readable PyTorch classifier file ({type(err).__name__}: {err})"
        ) from None
    if isinstance(loaded, nn.Module):
        state = loaded.state_dict()
    elif isinstance(loaded, dict):
        state = loaded
    else:
        raise InputError(f"{path}: holds a {type(loaded).__name__}, not a classifier module or state dict")
    return _model_from_state(state, path, source or str(path))


def _model_from_state(state: dict, path: Path, source: str) -> tuple[MLPClassifier, ClassifierConfig]:
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        raise InputError(f"{path}: not a VirNucPro classifier: missing {', '.join(missing)}")
    hidden_dim, input_dim = state["hidden_layer.weight"].shape
    num_classes = state["output_layer.weight"].shape[0]
    dnabert_dim, esm_dim = _PUBLISHED_WIDTHS.get(int(input_dim), (None, None))
    published = _PUBLISHED_NAME.match(path.name)
    config = ClassifierConfig(
        input_dim=int(input_dim),
        hidden_dim=int(hidden_dim),
        num_classes=int(num_classes),
        dnabert_dim=dnabert_dim,
        esm_dim=esm_dim,
        source=source,
        chunk_size=int(published[1]) if published else None,
    )
    model = MLPClassifier(config.input_dim, config.hidden_dim, config.num_classes)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as err:
        raise InputError(f"{path}: weights do not fit the classifier's layers ({err})") from None
    return model.eval(), config
