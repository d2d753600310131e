"""Reading model folders safely: `config.json` checked with one-line errors naming the file, and
weights read from safetensors memory-mapped, or from a `.bin` only through PyTorch's weights-only
unpickler (a file that would run code or build other objects is refused, one line)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from virnucpro.errors import InputError

# Fields of config.json that shape a network: each must be a positive integer.
SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def read_config(path: Path, defaults: Mapping[str, object] | None = None) -> dict:
    """A model's `config.json` as a dict, its shape fields checked (a missing one takes its value
    from `defaults`); an `InputError` naming the file says what is wrong with it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read it ({err})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: not a model configuration (a JSON object)")
    merged = {**(defaults or {}), **raw}
    for name in SHAPE_FIELDS:
        value = merged.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{path}: {name} is {value!r}, not a positive integer")
    if merged["hidden_size"] % merged["num_attention_heads"]:
        raise InputError(f"{path}: hidden_size is not a multiple of num_attention_heads")
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

    from virnucpro.torch_archives import check_torch_archive

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
