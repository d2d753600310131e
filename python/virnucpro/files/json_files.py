"""Reading the JSON files a user can hand us (calibration.json, --run-info, a model's config.json,
the records of earlier runs): every way such a file can be wrong is one `InputError` naming it.

JSON as Python reads it accepts more than JSON: `NaN`, `Infinity` and numbers that overflow to
infinity (`1e400`); nesting deep enough to exhaust the interpreter's stack; a byte-order mark.
A file is refused for the first three (a number we compute with must be finite), the mark is
skipped (Windows editors write one), and checks of single fields go through `field` helpers that
say which field is wrong.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from virnucpro.errors import InputError

# Far beyond any configuration or calibration (a calibration is about 200 kB), far below a size
# whose parse would exhaust memory.
MAX_BYTES = 256 << 20
MAX_DEPTH = 64
# JSON numbers that count something: integers exactly representable in a double and in int64.
MAX_COUNT = 2**53
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"the number {text} is too large for a float")
    return value


def _constant(text: str) -> float:
    raise _NotFinite(f"{text} is not a number JSON allows")


def parse_json(raw: bytes | str, source: str | os.PathLike[str], what: str | None = None) -> object:
    """The JSON value in `raw` (the bytes of `source`, named in messages as `what`, such as
    "--run-info", when the file's name does not say it)."""
    import json

    subject = f"{source}: {what} is" if what else f"{source}:"
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise InputError(f"{subject} not UTF-8 text (byte {err.start})") from None
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_constant)
    except _NotFinite as err:
        raise InputError(f"{source}: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{subject} not valid JSON (line {err.lineno}: {err.msg})") from None
    except RecursionError:
        raise InputError(f"{subject} nested too deeply") from None
    if _depth(value) > MAX_DEPTH:
        raise InputError(f"{subject} nested more than {MAX_DEPTH} levels deep")
    return value


def read_json(path: str | os.PathLike[str], what: str | None = None) -> object:
    """The JSON value in the file `path`."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise InputError(f"{path}: larger than {MAX_BYTES >> 20} MiB")
    return parse_json(raw, path, what)


def read_json_object(path: str | os.PathLike[str], what: str | None = None) -> dict:
    value = read_json(path, what)
    if not isinstance(value, dict):
        raise InputError(f"{path}: must hold a JSON object, not {json_type(value)}")
    return value


def _depth(value: object) -> int:
    """How deeply lists and objects nest in `value` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
        else:
            continue
        deepest = max(deepest, level + 1)
    return deepest


def json_type(value: object) -> str:
    """What a JSON value is, in JSON's words (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def is_count(value: object, maximum: int = MAX_COUNT) -> bool:
    """A whole number from 0 to `maximum` (JSON `true` is not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def is_number(value: object) -> bool:
    """A finite number (a whole one of any size: Python's ints are exact)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def check_keys(content: Mapping, required: set[str], optional: set[str], where: str) -> None:
    """Refuse a missing or an unknown key (one line naming it)."""
    missing = sorted(required - content.keys())
    if missing:
        raise InputError(f"{where}: no {missing[0]!r}")
    unknown = sorted(content.keys() - required - optional)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}")
