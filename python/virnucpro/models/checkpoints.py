"""Reading checkpoint files safely: safetensors memory-mapped, `.bin` only through PyTorch's
weights-only unpickler (a file that would run code or build other objects is refused, one line)."""

from __future__ import annotations

from pathlib import Path

import torch

from virnucpro.errors import InputError


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


def load_weights_only(path: Path) -> dict[str, torch.Tensor]:
    """A `.bin` checkpoint's tensors, refusing (one line, naming the file) anything that would need
    more than the weights-only unpickler."""
    import pickle

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
