"""`make_test_models`: real architectures and quirks at small sizes, identical bytes on every run,
and a classifier that calls both classes on the bundled example."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import PARITY, run_cli
from virnucpro.embedding.engine import embed_sequences, load_embedder
from virnucpro.files.sequences import read_sequences
from virnucpro.method.classifier import load_classifier_folder
from virnucpro.method.frames import translate_chunks
from virnucpro.models.dnabert_s import DnabertTokenizer


def folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_bytes_on_every_run(test_models, tmp_path):
    result = run_cli("make-test-models", tmp_path / "again", check=True)
    assert "test models written" in result.stderr
    again = folder_bytes(tmp_path / "again")
    assert set(again) >= {
        "dnabert-s/config.json",
        "dnabert-s/model.safetensors",
        "dnabert-s/tokenizer.json",
        "esm2/config.json",
        "esm2/model.safetensors",
        "esm2/vocab.txt",
        "classifier/config.json",
        "classifier/model.safetensors",
    }
    assert again == folder_bytes(test_models)


def test_dnabert_config_keeps_the_real_quirks(test_models):
    config = json.loads((test_models / "dnabert-s" / "config.json").read_text())
    if (PARITY / "dnabert_s" / "config.json").is_file():
        reference = json.loads((PARITY / "dnabert_s" / "config.json").read_text())
        assert set(config) == set(reference)
    heads = config["num_attention_heads"]
    assert heads & (heads - 1), "head count must not be a power of two (ALiBi slope rule)"
    assert config["hidden_size"] % heads == 0
    # A 500 bp chunk must be longer, in tokens, than the ALiBi table built at start.
    tokenizer = DnabertTokenizer(test_models / "dnabert-s" / "tokenizer.json")
    (ids,) = tokenizer.encode(["ACGTTGCA" * 63])
    assert len(ids) > config["alibi_starting_size"]


def test_dnabert_tokenizer_like_the_hub_one(test_models):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(test_models / "dnabert-s" / "tokenizer.json"))
    assert [tokenizer.token_to_id(t) for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert tokenizer.get_vocab_size() == 512
    encoding = tokenizer.encode("ATGAAACCCGGGTTTAAA")
    assert encoding.ids[0] == 1 and encoding.ids[-1] == 2
    assert 2 < len(encoding.ids) < 20  # merges were learned: fewer tokens than bases
    assert json.loads((test_models / "dnabert-s" / "tokenizer.json").read_text())["model"]["type"] == "BPE"


def test_esm_config_keeps_the_real_quirks(test_models):
    from transformers import EsmTokenizer

    config = json.loads((test_models / "esm2" / "config.json").read_text())
    assert config["token_dropout"] is True
    assert config["position_embedding_type"] == "rotary"
    assert config["emb_layer_norm_before"] is False
    assert config["max_position_embeddings"] == 1026
    tokenizer = EsmTokenizer.from_pretrained(str(test_models / "esm2"))
    assert len(tokenizer) == 33
    assert tokenizer("MKV")["input_ids"] == [0, 20, 15, 7, 2]


def test_classifier_calls_both_classes_on_the_example(test_models, example_fasta):
    sequences = [record.sequence for record in read_sequences(example_fasta)]
    frames = [f for chunk in translate_chunks(sequences, 500) for f in chunk.frames]
    assert len(frames) == 30
    dna = embed_sequences(
        load_embedder("dnabert", test_models / "dnabert-s"), [f.nucleotides.decode() for f in frames]
    )
    protein = embed_sequences(
        load_embedder("esm", test_models / "esm2"), [f.protein.decode() for f in frames]
    )
    model, config = load_classifier_folder(test_models / "classifier")
    assert (config.dnabert_dim, config.esm_dim) == (dna.shape[1], protein.shape[1])
    assert torch.count_nonzero(model.output_layer.bias) == 0
    with torch.no_grad():
        scores = torch.softmax(model(torch.cat([torch.from_numpy(dna), torch.from_numpy(protein)], 1)), dim=1)
    viral = int((scores[:, 1] >= scores[:, 0]).sum())
    assert 0 < viral < len(frames)
