"""Reading model folders safely: `config.json` checked with one-line errors naming the file, and
weights read from safetensors memory-mapped, or from a `.bin` only through PyTorch's weights-only
unpickler (a file that would run code or build other objects is refused, one line)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from virnucpro.errors import InputError

# Fields of config.json that shape a network: each must be a positive integer, at most its bound
# (far above any real model's; a larger one could not be built).
SHAPE_FIELDS = {
    "vocab_size": 1 << 20,
    "hidden_size": 1 << 16,
    "num_hidden_layers": 1 << 10,
    "num_attention_heads": 1 << 10,
    "intermediate_size": 1 << 18,
}
# Other fields the models read, when present: (kind, lowest, highest); None allowed where noted.
SETTING_FIELDS = {
    "layer_norm_eps": (float, 0.0, 1.0),
    "hidden_dropout_prob": (float, 0.0, 1.0),
    "attention_probs_dropout_prob": (float, 0.0, 1.0),
    "max_position_embeddings": (int, 1, 1 << 24),
    "type_vocab_size": (int, 1, 1 << 16),
    "alibi_starting_size": (int, 1, 1 << 24),
    "hidden_act": (str, None, None),
    "position_embedding_type": (str, None, None),
    "token_dropout": (bool, None, None),
    "emb_layer_norm_before": (bool, None, None),
}
TOKEN_FIELDS = ("pad_token_id", "mask_token_id")  # ids in the vocabulary, or null


def read_config(path: Path, defaults: Mapping[str, object] | None = None) -> dict:
    """A model's `config.json` as a dict, the fields that decide the network checked (a missing one
    takes its value from `defaults`); an `InputError` naming the file says what is wrong with it."""
    from virnucpro.files.json_files import is_count, is_number, read_json_object

    raw = read_json_object(path)
    merged = {**(defaults or {}), **raw}
    for name, highest in SHAPE_FIELDS.items():
        value = merged.get(name)
        if not is_count(value) or not 1 <= value <= highest:
            raise InputError(f"{path}: {name} is {value!r:.40}, not a positive integer of at most {highest}")
    if merged["hidden_size"] % merged["num_attention_heads"]:
        raise InputError(f"{path}: hidden_size is not a multiple of num_attention_heads")
    for name, (kind, lowest, highest) in SETTING_FIELDS.items():
        if name not in merged or (merged[name] is None and name == "emb_layer_norm_before"):
            continue
        value = merged[name]
        if kind is float:
            fits = is_number(value) and lowest <= value <= highest and (name != "layer_norm_eps" or value > 0)
        elif kind is int:
            fits = is_count(value) and lowest <= value <= highest
        else:
            fits = isinstance(value, kind)
        if not fits:
            bounds = f" from {lowest} to {highest}" if lowest is not None else ""
            raise InputError(f"{path}: {name} is {value!r:.40}, not a {kind.__name__}{bounds}")
    for name in TOKEN_FIELDS:
        value = merged.get(name)
        if value is not None and not (is_count(value) and value < merged["vocab_size"]):
            raise InputError(f"{path}: {name} is {value!r:.40}, not a token id below vocab_size")
    return raw


def read_tensors(path: Path):
    """`(name, tensor)` pairs of a checkpoint, one at a time: safetensors memory-mapped; a `.bin`
    through `torch.load(weights_only=True)`, so no pickled code runs."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    yield key, handle.get_tensor(key)
        except SafetensorError as err:
            raise InputError(f"{path}: not a readable safetensors file ({err})") from None
        return
    yield from load_weights_only(path).items()


# The largest checkpoint we load, ESM-2 15B in float32, declares about 60 GB.
WEIGHTS_MAX_BYTES = 64 << 30


def load_weights_only(path: Path, max_bytes: int = WEIGHTS_MAX_BYTES) -> dict[str, torch.Tensor]:
    """A `.bin` checkpoint's tensors, refusing (one line, naming the file) anything that would need
    more than the weights-only unpickler, or that declares more bytes than the file could hold (a
    zip bomb) or than `max_bytes`, before torch reads it."""
    import pickle

    from virnucpro.files.torch_archives import check_torch_archive

    check_torch_archive(path, max_bytes, "model weights")

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{path}: not a plain weights file (refused to unpickle it: {first.rstrip('.')[:200]})"
        ) from None
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise InputError(f"{path}: not a plain weights file (expected a dictionary of tensors)")
    return raw
