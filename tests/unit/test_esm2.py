"""ESM-2 through transformers: tokens, the whole protein through the model (no 1024 cut), the
residue-only mean, parity with fair-esm itself, attention paths, one-line load errors."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from fair_esm_convert import write_hub_folder
from virnucpro.embedding.engine import KernelChoice, embed_sequences, load_embedder
from virnucpro.errors import InputError
from virnucpro.models.esm2 import MAX_POOLED_RESIDUES, EsmEncoder, load_esm

esm = pytest.importorskip("esm", reason="fair-esm (the original tool's ESM-2 code) is a test dependency")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def original_mean(model, ids: list[int], residues: int) -> torch.Tensor:
    """The original tool's vector: one protein alone, `t[0, 1 : min(len, 1024) + 1].mean(0)`."""
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    return hidden[1 : min(residues, MAX_POOLED_RESIDUES) + 1].mean(dim=0)


def proteins_of(lengths: list[int], seed: int, letters: str = AMINO_ACIDS) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(letters) for _ in range(n)) for n in lengths]


@pytest.fixture(scope="module")
def fair_esm_model():
    """A small random fair-esm ESM2 (real ESM-2 layout: rotary, token dropout), LayerNorms
    randomised too so that a swapped weight and bias would show."""
    torch.manual_seed(5)
    model = esm.model.esm2.ESM2(num_layers=2, embed_dim=64, attention_heads=4, alphabet="ESM-1b")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def fair_esm_extract(model, proteins: list[str]) -> np.ndarray:
    """The original `extract_esm`: fair-esm's batch converter with no truncation length, one
    protein per batch, final layer, mean over residues 1..min(len, 1024)."""
    converter = model.alphabet.get_batch_converter()
    rows = []
    with torch.no_grad():
        for i, protein in enumerate(proteins):
            _, _, tokens = converter([(f"p{i}", protein)])
            out = model(tokens, repr_layers=[model.num_layers])["representations"][model.num_layers]
            rows.append(out[0, 1 : min(len(protein), MAX_POOLED_RESIDUES) + 1].mean(dim=0).numpy())
    return np.stack(rows)


@pytest.mark.slow
def test_matches_fair_esm_for_proteins_up_to_1500_residues(fair_esm_model, tmp_path):
    folder = write_hub_folder(fair_esm_model, tmp_path / "esm2")
    lengths = [1500, 1025, 1024, 1023, 700, 166, 120, 50, 7, 1]
    proteins = proteins_of(lengths, seed=3, letters=AMINO_ACIDS + "XBZUO")
    # A budget below the longest protein: it goes through whole, alone in its batch.
    embedder = load_embedder("esm", folder, tokens_per_batch=1400)
    plan = embedder.batches(embedder.encode_table(proteins).lengths.tolist())
    assert plan[0] == [0] and plan[1] == [1]
    got = embed_sequences(embedder, proteins)
    np.testing.assert_allclose(got, fair_esm_extract(fair_esm_model, proteins), **TOLERANCE)


def test_encoder_matches_fair_esm_and_maps_other_letters_to_unk(fair_esm_model, test_models):
    encoder = EsmEncoder(test_models / "esm2")
    converter = fair_esm_model.alphabet.get_batch_converter()
    proteins = ["MKVLAAGIVGLLLA", "WYHC", "MXBZUO", "M", "ACDEFGHIKLMNPQRSTVWYXBZUO" * 60]
    for protein in proteins:
        _, _, tokens = converter([("p", protein)])
        assert encoder.encode([protein]) == [tokens[0].tolist()]
    # fair-esm stops at letters outside its vocabulary; here each such character is one <unk>.
    (ids,) = encoder.encode(["MJ*kéK"])
    unk = encoder.unk_id
    assert ids == [encoder.cls_id, 20, unk, unk, unk, unk, 15, encoder.eos_id]


def test_long_proteins_go_through_whole_and_the_mean_stops_at_1024(test_models):
    embedder = load_embedder("esm", test_models / "esm2")
    protein = proteins_of([1100], seed=4)[0]
    ids = embedder.encode_table([protein]).row(0)
    assert len(ids) == len(protein) + 2 and ids[-1] == embedder.encoder.eos_id
    pooled = embedder.pooled(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
    expected = original_mean(embedder.model, ids, len(protein))
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)
    # The residues after 1024 still change the pooled ones (attention sees the whole protein).
    cut = embedder.pooled(torch.tensor([ids[:1025] + ids[-1:]]), torch.ones(1, 1026, dtype=torch.long))[0]
    assert not torch.allclose(cut, pooled, rtol=1e-4, atol=1e-5)


def test_pooled_vector_is_the_residue_mean(test_models):
    embedder = load_embedder("esm", test_models / "esm2")
    protein = "MKVLAAGIVGLLLAWYHCDEPRST"
    ids = embedder.encode_table([protein]).row(0)
    pooled = embedder.pooled(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
    torch.testing.assert_close(pooled, original_mean(embedder.model, ids, len(protein)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ["flex_attention", "eager"])
def test_attention_paths_match_sdpa(test_models, attention):
    proteins = proteins_of([166, 150, 90, 40, 3], seed=6)
    reference = embed_sequences(load_embedder("esm", test_models / "esm2"), proteins)
    other = load_embedder("esm", test_models / "esm2", kernels=KernelChoice(esm_attention=attention))
    assert other.attention_kernel == attention
    np.testing.assert_allclose(embed_sequences(other, proteins), reference, **TOLERANCE)


def test_loads_masked_lm_checkpoint_as_encoder_with_sdpa(test_models):
    model, _ = load_esm(test_models / "esm2")
    assert type(model).__name__ == "EsmModel" and model.pooler is None
    assert model.config._attn_implementation == "sdpa"
    # Weights came from the EsmForMaskedLM checkpoint ("esm." prefix), not from a fresh init.
    from safetensors.torch import load_file

    saved = load_file(str(test_models / "esm2" / "model.safetensors"))
    torch.testing.assert_close(
        model.embeddings.word_embeddings.weight, saved["esm.embeddings.word_embeddings.weight"]
    )


def test_missing_files_are_an_error(tmp_path):
    with pytest.raises(InputError, match=r"no config\.json"):
        load_esm(tmp_path)


def test_broken_config_and_mismatched_weights_are_one_line(test_models, tmp_path):
    folder = tmp_path / "esm2"
    shutil.copytree(test_models / "esm2", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config)[:-10])
    with pytest.raises(InputError, match=r"config\.json: not valid JSON"):
        load_esm(folder)
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 80, "intermediate_size": 160}))
    with pytest.raises(InputError) as caught:
        load_esm(folder)
    message = str(caught.value)
    assert "model.safetensors: tensor esm." in message and "makes it [" in message and "\n" not in message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refused_bin_is_one_line(test_models, tmp_path):
    folder = tmp_path / "esm2"
    shutil.copytree(test_models / "esm2", folder)
    (folder / "model.safetensors").unlink()

    class NotWeights:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"x": NotWeights()}, folder / "pytorch_model.bin")
    with pytest.raises(InputError) as caught:
        load_esm(folder)
    message = str(caught.value)
    assert "pytorch_model.bin: not a plain weights file (refused to unpickle it" in message
    assert "\n" not in message
