"""ESM-2 through transformers: tokens, truncation to 1024 residues, residue-only mean, SDPA."""

from __future__ import annotations

import pytest
import torch
from transformers import EsmTokenizer

from virnucpro.embedding.engine import load_embedder
from virnucpro.errors import InputError
from virnucpro.models.esm2 import MAX_RESIDUES, EsmEncoder, load_esm


def original_mean(model, ids: list[int], residues: int) -> torch.Tensor:
    """The original tool's vector: one protein alone, `t[0, 1 : min(len, 1024) + 1].mean(0)`."""
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    return hidden[1 : min(residues, MAX_RESIDUES) + 1].mean(dim=0)


def test_encoder_matches_esm_tokenizer(test_models):
    encoder = EsmEncoder(test_models / "esm2")
    tokenizer = EsmTokenizer.from_pretrained(str(test_models / "esm2"))
    proteins = ["MKVLAAGIVGLLLA", "WYHC", "MXBZUO", "M"]
    assert encoder.encode(proteins) == [tokenizer(p)["input_ids"] for p in proteins]


def test_long_proteins_are_cut_to_1024_residues(test_models):
    embedder = load_embedder("esm", test_models / "esm2")
    protein = ("MKVLAAGIVGLLLAWYHCDEPRST" * 50)[:1100]
    (ids,) = embedder.encode([protein])
    assert len(ids) == MAX_RESIDUES + 2 and ids[-1] == embedder.encoder.eos_id
    pooled = embedder.pooled(*[torch.tensor([x]) for x in (ids, [1] * len(ids))])[0]
    torch.testing.assert_close(pooled, original_mean(embedder.model, ids, len(protein)), rtol=1e-5, atol=1e-6)


def test_pooled_vector_is_the_residue_mean(test_models):
    embedder = load_embedder("esm", test_models / "esm2")
    protein = "MKVLAAGIVGLLLAWYHCDEPRST"
    (ids,) = embedder.encode([protein])
    pooled = embedder.pooled(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
    torch.testing.assert_close(pooled, original_mean(embedder.model, ids, len(protein)), rtol=1e-5, atol=1e-6)


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
