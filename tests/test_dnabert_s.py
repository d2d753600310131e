"""The native DNABERT-S: parity with the reference architecture, checkpoint forms, precision."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import PARITY
from virnucpro.errors import InputError
from virnucpro.models.dnabert_s import (
    DnabertConfig,
    DnabertModel,
    alibi_slopes,
    load_dnabert,
    load_state_dict,
)

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def parity_or_skip():
    folder = PARITY / "dnabert_s"
    if not (folder / "vectors.safetensors").is_file():
        pytest.skip(f"DNABERT-S parity vectors not present at {folder}")
    return folder


def test_reproduces_every_reference_tensor():
    folder = parity_or_skip()
    config = DnabertConfig.from_file(folder / "config.json")
    model = DnabertModel(config, add_pooling_layer=True)
    model.load_state_dict(load_state_dict(folder / "model.safetensors"))
    model.eval()
    vectors = load_file(str(folder / "vectors.safetensors"))
    ids, mask = vectors["input_ids"], vectors["attention_mask"]
    checked = set()
    with torch.no_grad():
        batched = model(ids, mask)
        torch.testing.assert_close(batched, vectors["batched_last_hidden_state"], **TOLERANCE)
        torch.testing.assert_close(model.pooler(batched), vectors["pooled_output"], **TOLERANCE)
        checked |= {"input_ids", "attention_mask", "batched_last_hidden_state", "pooled_output"}
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            single = model(ids[i : i + 1, :n])[0]  # unpadded, no mask: as the original tool calls it
            torch.testing.assert_close(single, vectors[f"single_{i}_last_hidden_state"], **TOLERANCE)
            torch.testing.assert_close(single.mean(dim=0), vectors[f"single_{i}_mean"], **TOLERANCE)
            checked |= {f"single_{i}_last_hidden_state", f"single_{i}_mean"}
    assert checked == set(vectors), "every tensor of the parity file is checked"
    assert ids.shape[1] > config.alibi_starting_size or max(mask.sum(1)) > 512


def test_alibi_slopes_for_non_power_of_two_heads():
    assert alibi_slopes(8) == [2 ** -(i + 1) for i in range(8)]
    twelve = alibi_slopes(12)
    # The first 8 are the 8-head slopes, then every other slope of the 16-head set.
    assert twelve[:8] == alibi_slopes(8)
    assert twelve[8:] == alibi_slopes(16)[0::2][:4]


def embed_one(model, tokenizer, sequence):
    ids = torch.tensor([tokenizer.encode([sequence])[0]])
    with torch.no_grad():
        return model(ids)[0].mean(dim=0)


@pytest.mark.parametrize("prefix", ["bert.", ""])
@pytest.mark.parametrize("form", ["safetensors", "bin"])
def test_checkpoint_forms_load_the_same_model(test_models, tmp_path, prefix, form):
    source = test_models / "dnabert-s"
    reference_model, tokenizer = load_dnabert(source)
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_bytes((source / name).read_bytes())
    state = {
        prefix + k.removeprefix("bert."): v for k, v in load_file(str(source / "model.safetensors")).items()
    }
    if form == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"))
    model, _ = load_dnabert(folder)
    sequence = "ATGGCGTACCTGAAAGGTTGA" * 30
    torch.testing.assert_close(
        embed_one(model, tokenizer, sequence), embed_one(reference_model, tokenizer, sequence)
    )


class NotWeights:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_refused(test_models, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_bytes((test_models / "dnabert-s" / name).read_bytes())
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"x": NotWeights()}, handle)
    with pytest.raises(InputError, match="refused to unpickle"):
        load_dnabert(folder)


def test_missing_tensors_are_an_error(test_models, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_bytes((test_models / "dnabert-s" / name).read_bytes())
    state = load_file(str(test_models / "dnabert-s" / "model.safetensors"))
    del state["bert.encoder.layer.1.mlp.wo.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(InputError, match="lacks 1 tensors"):
        load_dnabert(folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InputError, match=r"no tokenizer\.json"):
        load_dnabert(folder)


def test_inputs_longer_than_512_tokens(test_models):
    model, tokenizer = load_dnabert(test_models / "dnabert-s")
    (ids,) = tokenizer.encode(["ACGTGCATTGCAAGGCTTAC" * 200])
    assert len(ids) > 512
    with torch.no_grad():
        hidden = model(torch.tensor([ids]))
    assert hidden.shape == (1, len(ids), model.config.hidden_size)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precisions_stay_close_to_fp32(test_models, dtype):
    full, tokenizer = load_dnabert(test_models / "dnabert-s")
    half, _ = load_dnabert(test_models / "dnabert-s", dtype=dtype)
    ids = torch.tensor(tokenizer.encode(["ATGGCGTACCTGAAAGGTTGAC" * 20]))
    with torch.no_grad():
        reference = full(ids)
        low = half(ids)
    assert low.dtype == dtype
    assert torch.nn.functional.cosine_similarity(low.float().flatten(), reference.flatten(), dim=0) > 0.99
