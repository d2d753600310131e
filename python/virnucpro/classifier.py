"""The VirNucPro classifier: an MLP over the concatenated DNABERT-S and ESM-2 mean embeddings.

Stored as `model.safetensors` (the original module's state-dict key names) plus `config.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from virnucpro.atomic import atomic_path

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


def save_classifier(model: MLPClassifier, outdir: str | Path, config: ClassifierConfig) -> None:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(outdir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(outdir / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(asdict(config), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_classifier_folder(folder: str | Path) -> tuple[MLPClassifier, ClassifierConfig]:
    """Load a classifier saved by `save_classifier`, in eval mode on the CPU."""
    folder = Path(folder)
    config = ClassifierConfig(**json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
    model = MLPClassifier(config.input_dim, config.hidden_dim, config.num_classes)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return model.eval(), config
