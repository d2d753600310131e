"""The native DNABERT-S: parity with the reference architecture, checkpoint forms, precision."""

from __future__ import annotations

import json
import pickle
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import PARITY
from virnucpro.errors import InputError
from virnucpro.models.batching import pad_right
from virnucpro.models.dnabert_s import (
    DnabertConfig,
    DnabertModel,
    alibi_slopes,
    load_dnabert,
    load_state_dict,
)
from virnucpro.models.precision import PRECISION_MODES, autocast

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
    # torch.save's zip format reaches the weights-only unpickler; a bare pickle (the legacy format)
    # is refused before it, from its lack of a zip directory.
    torch.save({"x": NotWeights()}, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="refused to unpickle") as caught:
        load_dnabert(folder)
    assert "pytorch_model.bin: not a plain weights file" in str(caught.value)
    assert "\n" not in str(caught.value)
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"x": NotWeights()}, handle)
    with pytest.raises(InputError, match="refused to unpickle") as caught:
        load_dnabert(folder)
    assert "pytorch_model.bin: not a zip-format PyTorch file" in str(caught.value)


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


@pytest.mark.parametrize("precision", ["bf16", "bf16-cast", "fp16"])
def test_lower_precisions_stay_close_to_fp32(test_models, precision):
    mode = PRECISION_MODES[precision]
    full, tokenizer = load_dnabert(test_models / "dnabert-s")
    low, _ = load_dnabert(test_models / "dnabert-s", mode=mode)
    ids = torch.tensor(tokenizer.encode(["ATGGCGTACCTGAAAGGTTGAC" * 20]))
    with torch.no_grad():
        reference = full(ids)
        with autocast(mode, ids.device):
            lowered = low(ids)
    assert low.encoder.layer[0].mlp.wo.weight.dtype == mode.linear_dtype
    assert low.embeddings.LayerNorm.weight.dtype == mode.other_dtype
    # Mixed bf16 keeps the residual stream (and so the output) in float32.
    assert lowered.dtype == (torch.float32 if precision == "bf16" else mode.other_dtype)
    assert not torch.equal(lowered.float(), reference)  # really computed in lower precision
    assert torch.nn.functional.cosine_similarity(lowered.float().flatten(), reference.flatten(), dim=0) > 0.99


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_flex_attention_matches_the_reference_path(test_models, precision):
    """ALiBi and padding inside FlexAttention (eager, as CPUs run it) give the dense-bias SDPA
    path's values: fp32 at rtol 1e-4, atol 1e-5; mixed bf16 within bf16 rounding."""
    mode = PRECISION_MODES[precision]
    sdpa, tokenizer = load_dnabert(test_models / "dnabert-s", mode=mode)
    flex, _ = load_dnabert(test_models / "dnabert-s", mode=mode, attention="flex")
    rng = random.Random(9)
    sequences = ["".join(rng.choice("ACGT") for _ in range(rng.randint(20, 501))) for _ in range(12)]
    ids, mask = pad_right(tokenizer.encode(sequences), tokenizer.pad_id)
    assert ids.shape[1] > 64 and int(mask.sum(1).min()) < ids.shape[1]  # beyond ALiBi's start size, padded
    with torch.no_grad(), autocast(mode, ids.device):
        expected, got = sdpa(ids, mask), flex(ids, mask)
    tolerance = TOLERANCE if precision == "fp32" else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(got, expected, **tolerance)


def test_broken_config_is_one_line_naming_the_file(test_models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(test_models / "dnabert-s", folder)
    (folder / "config.json").write_text('{"hidden_size": 48,')
    with pytest.raises(InputError, match=r"config\.json: not valid JSON \(line 1"):
        load_dnabert(folder)
    (folder / "config.json").write_text('{"hidden_size": "wide"}')
    with pytest.raises(InputError, match=r"config\.json: hidden_size is 'wide', not a positive integer"):
        load_dnabert(folder)


def test_weights_of_another_width_are_one_line(test_models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(test_models / "dnabert-s", folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_size=96, intermediate_size=192)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError) as caught:
        load_dnabert(folder)
    message = str(caught.value)
    assert "model.safetensors: tensor " in message and "has shape [512, 48]" in message
    assert "makes it [512, 96]" in message and "\n" not in message
