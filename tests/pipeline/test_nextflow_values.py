"""The values that the pipeline's Nextflow files (and the parameter schema) repeat from the Python
package agree with `virnucpro.defaults`: the published classifier URLs, the chunk sizes, the
precisions and the hub-id pattern. The .nf files are read as text and searched for the values,
whatever their layout; the choices of --chunk_size and --precision are checked from the schema."""

from __future__ import annotations

import json
import re

from conftest import REPO
from virnucpro.defaults import (
    CHUNK_SIZES,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PRECISION,
    HUB_ID_PATTERN,
    PRECISIONS,
    PUBLISHED_CLASSIFIERS,
)
from virnucpro.models.sources import HUB_ID

PIPELINE_FILES = [
    REPO / "main.nf",
    *sorted(REPO.glob("workflows/*.nf")),
    *sorted(REPO.glob("subworkflows/**/*.nf")),
]
MAIN_NF = "\n".join(path.read_text() for path in PIPELINE_FILES)
SCHEMA = json.loads((REPO / "nextflow_schema.json").read_text())


def lists_near(name: str, text: str) -> list[list[str]]:
    """Every bracketed list literal on a line of `text` that mentions `name` (quotes stripped)."""
    found = []
    for line in text.splitlines():
        if re.search(rf"\b{name}\b", line):
            for body in re.findall(r"\[([^\[\]]*)\]", line):
                items = [item.strip().strip("'\"") for item in body.split(",") if item.strip()]
                if items:
                    found.append(items)
    return found


def schema_property(name: str) -> dict:
    for group in SCHEMA.get("$defs", SCHEMA.get("definitions", {})).values():
        if name in group.get("properties", {}):
            return group["properties"][name]
    raise AssertionError(f"{name} is not in nextflow_schema.json")


def test_published_classifier_urls():
    templates = re.findall(r"https?://[^\s\"'`]+", MAIN_NF)
    # Groovy interpolation (${chunkSize}, $size) stands for the chunk size.
    urls = {re.sub(r"\$\{[^}]*\}|\$\w+", "{size}", url) for url in templates}
    for size in CHUNK_SIZES:
        assert PUBLISHED_CLASSIFIERS[size] in {url.format(size=size) for url in urls if "{size}" in url}, (
            f"the pipeline does not build {PUBLISHED_CLASSIFIERS[size]}"
        )


def test_chunk_sizes_and_precisions():
    # The checks read the choices from the schema; a list the .nf files spell out must agree too
    chunk_lists = lists_near("chunk_size", MAIN_NF)
    assert all(sorted(map(int, items)) == sorted(CHUNK_SIZES) for items in chunk_lists), chunk_lists
    precision_lists = lists_near("precision", MAIN_NF)
    assert all(sorted(items) == sorted(PRECISIONS) for items in precision_lists), precision_lists
    assert sorted(schema_property("chunk_size")["enum"]) == sorted(CHUNK_SIZES)
    assert sorted(schema_property("precision")["enum"]) == sorted(PRECISIONS)
    assert schema_property("chunk_size")["default"] == DEFAULT_CHUNK_SIZE
    assert schema_property("precision")["default"] == DEFAULT_PRECISION


def test_hub_id_pattern():
    # Groovy's slashy strings escape '/' as '\/'.
    slashy = {body.replace("\\/", "/") for body in re.findall(r"~\s*/((?:\\/|[^/\n])+)/", MAIN_NF)}
    assert HUB_ID_PATTERN in slashy, f"the pipeline matches hub ids with none of {sorted(slashy)}"
    assert HUB_ID.pattern == HUB_ID_PATTERN  # the Python side uses the same definition
