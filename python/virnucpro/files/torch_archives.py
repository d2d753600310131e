"""Bounds for PyTorch checkpoint files (`.pth`, `pytorch_model.bin`), checked before torch reads them.

Weights-only loading keeps pickled code from running, but not a file from making torch allocate
what it declares: a zip member may claim gigabytes that inflate from a few kilobytes (a zip bomb),
and the legacy (pre-zip) format declares each tensor's size before its bytes. torch stores members
uncompressed, so a real checkpoint's members add up to about the file's size; anything declaring
far more, or more than the caller's cap, is refused from the zip directory alone, before a byte is
decompressed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from virnucpro.errors import InputError

# Declared uncompressed bytes may exceed the file's size by this factor (plus a little) at most.
MAX_EXPANSION = 1.5
_SLACK_BYTES = 1 << 20


def check_torch_archive(path: str | Path, max_bytes: int, what: str) -> None:
    """Refuse `path` unless it is a zip-format torch file whose members declare at most about the
    file's own size, and at most `max_bytes` in all (`what` names the expected content)."""
    path = Path(path)
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{path}: not a zip-format PyTorch file (torch.save writes zip since torch 1.6): refused to "
            "unpickle it (the legacy format declares tensor sizes before their bytes)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable PyTorch file ({err})") from None
    if declared > MAX_EXPANSION * size + _SLACK_BYTES:
        raise InputError(
            f"{path}: refused: its members declare {declared:,} bytes uncompressed in a file of {size:,} "
            "bytes (torch stores tensors uncompressed; this looks like a zip bomb)"
        )
    if declared > max_bytes:
        raise InputError(
            f"{path}: refused: {declared:,} bytes of tensors, more than {max_bytes:,} for {what}"
        )
