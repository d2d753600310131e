"""`virnucpro download-models` with local sources (no machine here reaches the hub): the folder
layout, the manifest, conversion of an original `.pth`, keeping what is current, and that the
fetched folders are the same models."""

from __future__ import annotations

import json

import numpy as np
import torch

from conftest import run_cli
from original_classifier import make_original_pth
from virnucpro.models.classifier_weights import load_classifier
from virnucpro.models.sources import content_hash


def test_download_models_from_local_sources(test_models, tmp_path):
    pth = make_original_pth(tmp_path, input_dim=88)
    outdir = tmp_path / "models"
    args = [
        "download-models", "--outdir", outdir,
        "--dnabert-model", test_models / "dnabert-s", "--esm-model", test_models / "esm2",
        "--classifier-500", test_models / "classifier", "--classifier-300", pth,
    ]  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in outdir.iterdir()) == [
        "classifier-300", "classifier-500", "dnabert-s", "esm2", "models.json",
    ]  # fmt: skip
    # The model folders are copies, file for file.
    assert content_hash(outdir / "dnabert-s") == content_hash(test_models / "dnabert-s")
    assert content_hash(outdir / "esm2") == content_hash(test_models / "esm2")
    manifest = json.loads((outdir / "models.json").read_text())
    assert manifest["dnabert-s"] == {
        "source": str(test_models / "dnabert-s"),
        "revision": f"local:sha256={content_hash(test_models / 'dnabert-s')}",
        "path": "dnabert-s",
    }
    # The original-format classifier arrives converted (no pickle on compute nodes) and scores the same.
    assert sorted(p.name for p in (outdir / "classifier-300").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    assert manifest["classifier-300"]["input_dim"] == 88
    features = np.load(f"{pth}.features.npy")
    with torch.no_grad():
        scores = torch.softmax(
            load_classifier(outdir / "classifier-300").model(torch.from_numpy(features)), dim=1
        )
    np.testing.assert_array_equal(scores.numpy(), np.load(f"{pth}.probabilities.npy"))
    original = load_classifier(test_models / "classifier")
    assert load_classifier(outdir / "classifier-500").config.input_dim == original.config.input_dim

    # A second call keeps what is current; a changed source is fetched again.
    stamps = {p: p.stat().st_mtime_ns for p in outdir.rglob("*") if p.is_file() and p.name != "models.json"}
    assert run_cli(*args).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    args[args.index("--classifier-300") + 1] = test_models / "classifier"
    assert run_cli(*args).returncode == 0
    assert json.loads((outdir / "models.json").read_text())["classifier-300"]["source"] == str(
        test_models / "classifier"
    )
    assert load_classifier(outdir / "classifier-300").config.input_dim == original.config.input_dim


def test_download_models_offline_names_the_fix(tmp_path):
    result = run_cli("download-models", "--outdir", tmp_path / "models", "--dnabert-model", "no-such/model")
    assert result.returncode != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "no-such/model" in message and "HF_HUB_OFFLINE" in message
