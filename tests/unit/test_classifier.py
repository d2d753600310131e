"""The classifier: reading the published `.pth` format safely, conversion, and every accepted form."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from original_classifier import make_original_pth
from synthetic import random_classifier
from virnucpro.errors import InputError
from virnucpro.method.classifier import CONFIG_FILE, WEIGHTS_FILE
from virnucpro.models.classifier_weights import convert_classifier, load_classifier


# The training script's class, as the original defines it: a module pickled from `__main__`.
def scores_of(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model.eval()(torch.from_numpy(features)), dim=1).numpy()


def test_original_pth_loads_and_scores_like_the_original(tmp_path):
    pth = make_original_pth(tmp_path)
    loaded = load_classifier(pth)
    assert (loaded.config.input_dim, loaded.config.hidden_dim, loaded.config.num_classes) == (3328, 512, 2)
    assert (loaded.config.dnabert_dim, loaded.config.esm_dim) == (768, 2560)
    assert loaded.revision == "local" and len(loaded.sha256) == 64
    assert not loaded.model.training
    features = np.load(f"{pth}.features.npy")
    expected = np.load(f"{pth}.probabilities.npy")
    np.testing.assert_array_equal(scores_of(loaded.model, features), expected)


def write_malicious_pth(path: Path, marker: Path, wrap_in_module: bool) -> None:
    """A torch.save file whose unpickling would run a shell command that creates `marker`."""
    script = textwrap.dedent(
        f"""
        import os, sys, torch
        from torch import nn

        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))

        class MLPClassifier(nn.Module):
            def __init__(self):
                super().__init__()
                self.hidden_layer = nn.Linear(4, 2)
                self.payload = Payload()

        torch.save(MLPClassifier() if {wrap_in_module} else Payload(), sys.argv[1])
        """
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)


@pytest.mark.parametrize("wrap_in_module", [False, True])
def test_pickle_that_runs_a_command_is_refused_without_running_it(tmp_path, wrap_in_module):
    marker = tmp_path / "pwned"
    pth = tmp_path / "evil.pth"
    write_malicious_pth(pth, marker, wrap_in_module)
    assert not marker.exists()
    with pytest.raises(InputError, match="refused to load"):
        load_classifier(pth)
    assert not marker.exists()
    result = run_cli("convert-classifier", pth, tmp_path / "converted")
    assert result.returncode == 2
    assert (
        result.stderr.strip().startswith("virnucpro: error:") and len(result.stderr.strip().splitlines()) == 1
    )
    assert "refused to load" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "converted" / WEIGHTS_FILE).exists()


def test_convert_classifier_cli_writes_safetensors_and_config(tmp_path):
    pth = make_original_pth(tmp_path)
    outdir = tmp_path / "converted"
    result = run_cli("convert-classifier", pth, outdir)
    assert result.returncode == 0, result.stderr
    config = json.loads((outdir / CONFIG_FILE).read_text())
    assert config["input_dim"] == 3328 and config["hidden_dim"] == 512 and config["num_classes"] == 2
    assert config["dnabert_dim"] == 768 and config["esm_dim"] == 2560
    assert config["source"] == str(pth)
    # The converted folder holds plain tensors only, and scores exactly like the original file.
    assert (outdir / WEIGHTS_FILE).read_bytes()[:8] != b"PK\x03\x04"
    features = np.load(f"{pth}.features.npy")
    expected = np.load(f"{pth}.probabilities.npy")
    for form in (outdir, outdir / WEIGHTS_FILE, pth):
        np.testing.assert_array_equal(scores_of(load_classifier(form).model, features), expected)


def test_state_dict_pth_and_conversion_round_trip(tmp_path):
    model = random_classifier(tmp_path / "folder", dnabert_dim=8, esm_dim=12)
    state_pth = tmp_path / "state.pth"
    torch.save(model.state_dict(), state_pth)
    config = convert_classifier(state_pth, tmp_path / "converted")
    assert config.input_dim == 20 and config.dnabert_dim is None and config.source == str(state_pth)
    features = np.random.default_rng(0).normal(size=(10, 20)).astype(np.float32)
    expected = scores_of(model, features)
    for form in (tmp_path / "folder", state_pth, tmp_path / "converted"):
        np.testing.assert_array_equal(scores_of(load_classifier(form).model, features), expected)
    # The sha256 names the weights file, so equal weights in two forms are told apart by form only.
    assert load_classifier(tmp_path / "folder").sha256 == load_classifier(tmp_path / "folder").sha256


def test_bad_classifier_inputs_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no model\.safetensors"):
        load_classifier(empty)
    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("hello\n")
    with pytest.raises(InputError, match=r"notes\.pth"):
        load_classifier(not_torch)
    wrong_keys = tmp_path / "wrong.pth"
    torch.save({"weight": torch.zeros(2, 2)}, wrong_keys)
    with pytest.raises(InputError, match=r"missing hidden_layer\.weight"):
        load_classifier(wrong_keys)
    lonely = tmp_path / "lonely" / "model.safetensors"
    lonely.parent.mkdir()
    lonely.write_bytes(b"")
    with pytest.raises(InputError, match=r"needs its config\.json"):
        load_classifier(lonely)
