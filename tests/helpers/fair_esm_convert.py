"""A fair-esm `ESM2` written as a transformers (hub layout) ESM-2 folder: the same conversion as
transformers' own `convert_esm.py`, for the ESM-2 architecture (rotary positions, token dropout,
no embedding LayerNorm, final LayerNorm after the last layer)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from virnucpro.models.tiny import ESM_VOCAB

LAYER_NAMES = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "LayerNorm",
}


def hub_state(model) -> dict[str, torch.Tensor]:
    """EsmForMaskedLM keys (`esm.` prefix) for the encoder of a fair-esm `ESM2`."""
    state = {"esm.embeddings.word_embeddings.weight": model.embed_tokens.weight}
    for i, layer in enumerate(model.layers):
        for ours, theirs in LAYER_NAMES.items():
            module = layer.get_submodule(ours)
            for part in ("weight", "bias"):
                state[f"esm.encoder.layer.{i}.{theirs}.{part}"] = getattr(module, part)
    for part in ("weight", "bias"):
        state[f"esm.encoder.emb_layer_norm_after.{part}"] = getattr(model.emb_layer_norm_after, part)
        state[f"esm.contact_head.regression.{part}"] = getattr(model.contact_head.regression, part)
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def write_hub_folder(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    assert model.alphabet.all_toks == ESM_VOCAB, "fair-esm's ESM-2 alphabet is the 33-token vocabulary"
    config = {
        "architectures": ["EsmForMaskedLM"],
        "model_type": "esm",
        "vocab_size": len(ESM_VOCAB),
        "hidden_size": model.embed_dim,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.attention_heads,
        "intermediate_size": 4 * model.embed_dim,
        "max_position_embeddings": 1026,
        "position_embedding_type": "rotary",
        "token_dropout": model.token_dropout,
        "emb_layer_norm_before": False,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "mask_token_id": model.mask_idx,
        "pad_token_id": model.padding_idx,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")
    save_file(hub_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
