"""Which samples a summary lists, and where their results are: the folders given on the command
line, or a manifest (what the pipeline's SUMMARY task writes, and what a person can write by hand).

A manifest is UTF-8 text (a byte-order mark is skipped), tab-separated, one header line naming the
columns, then one line per sample in the order the summary lists them:

    sample   status     failed_stage   folder          report
    s1       finished                  samples/1/out   s1/report.html
    s2       failed     EMBED

- `sample` (required): the sample's name, unique, no control characters;
- `status` (required): `finished` or `failed`;
- `failed_stage`: empty, or PREPARE, EMBED or REPORT (only for a failed sample; empty: unknown);
- `folder`: the sample's result folder, relative to the manifest's folder unless absolute; required
  for a finished sample; for a failed one optional (what it holds of prepare's counts is used);
- `report` (optional column): the link to the sample's report.html written into summary.html,
  relative to summary.html's folder (the pipeline publishes the reports elsewhere than where its
  task reads them); without it, the link points at the folder's report.html.

Blank lines are skipped; any other problem is one `InputError` naming the file, the line and what
is wrong.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from virnucpro.errors import InputError
from virnucpro.files.json_files import read_limited

FINISHED, FAILED = "finished", "failed"
STATUSES = (FINISHED, FAILED)
STAGES = ("PREPARE", "EMBED", "REPORT")
REQUIRED_COLUMNS = ("sample", "status")
COLUMNS = ("sample", "status", "failed_stage", "folder", "report")
MAX_BYTES = 64 << 20  # ~10^6 samples; far beyond any run, far below what a parse can hold
MAX_SAMPLE_NAME = 255  # a file name's limit: a sample's results live in a folder of its name


@dataclass(frozen=True)
class SampleSpec:
    """One sample of a summary: its name, status, the stage it failed at, its result folder and
    (optional) the link to its report.html, relative to the summary's folder."""

    sample: str
    status: str = FINISHED
    failed_stage: str = ""
    folder: Path | None = None
    report_link: str | None = None


def check_sample_name(name: str, where: str) -> None:
    """A sample name is a cell of summary.tsv and a key of MultiQC's data: one line, printable."""
    if not name:
        raise InputError(f"{where}: the sample name is empty")
    if len(name) > MAX_SAMPLE_NAME:
        raise InputError(f"{where}: the sample name is longer than {MAX_SAMPLE_NAME} characters")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        raise InputError(f"{where}: the sample name {name[:40]!r} holds the control character {bad!r}")
    if name != name.strip():
        raise InputError(f"{where}: the sample name {name!r} starts or ends with a space")


def parse_manifest(raw: bytes, source: str | os.PathLike[str], base: Path | None = None) -> list[SampleSpec]:
    """The samples of a manifest's bytes (`source` names it in messages; relative folders are
    resolved against `base`, the manifest's folder)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{source}: not UTF-8 text (byte {err.start})") from None
    lines = text.split("\n")
    numbered = [(number, line.removesuffix("\r")) for number, line in enumerate(lines, 1)]
    numbered = [(number, line) for number, line in numbered if line.strip()]
    if not numbered:
        raise InputError(
            f"{source}: empty; a manifest has a header line (sample, status, ...) and a line per sample"
        )
    header_line, header_text = numbered[0]
    header = header_text.split("\t")
    for column in header:
        if column not in COLUMNS:
            raise InputError(
                f"{source}, line {header_line}: unknown column {column[:40]!r}; the columns are "
                f"{', '.join(COLUMNS)} (tab-separated)"
            )
    duplicated = next((c for c in header if header.count(c) > 1), None)
    if duplicated:
        raise InputError(f"{source}, line {header_line}: the column {duplicated!r} is named twice")
    missing = next((c for c in REQUIRED_COLUMNS if c not in header), None)
    if missing:
        raise InputError(f"{source}, line {header_line}: no column {missing!r} in the header (tab-separated)")
    if len(numbered) < 2:
        raise InputError(f"{source}: lists no sample (only a header line)")
    samples: list[SampleSpec] = []
    seen: dict[str, int] = {}
    for number, line in numbered[1:]:
        where = f"{source}, line {number}"
        values = line.split("\t")
        if len(values) != len(header):
            raise InputError(
                f"{where}: {len(values)} tab-separated values for the {len(header)} columns of the header"
            )
        row = dict(zip(header, values, strict=True))
        sample = row["sample"]
        check_sample_name(sample, where)
        if sample in seen:
            raise InputError(f"{where}: sample {sample!r} is listed twice (also on line {seen[sample]})")
        seen[sample] = number
        status, stage = row["status"], row.get("failed_stage", "")
        folder_text, link = row.get("folder", ""), row.get("report", "")
        if status not in STATUSES:
            raise InputError(f"{where}: status {status[:40]!r}; it must be finished or failed")
        if stage and stage not in STAGES:
            raise InputError(f"{where}: failed_stage {stage[:40]!r}; it must be empty or {', '.join(STAGES)}")
        if status == FINISHED and stage:
            raise InputError(f"{where}: sample {sample!r} is finished but names a failed_stage ({stage})")
        if status == FINISHED and not folder_text:
            raise InputError(f"{where}: sample {sample!r} is finished but has no folder")
        for name, value in (("folder", folder_text), ("report", link)):
            if "\x00" in value or (value and value != value.strip()):
                raise InputError(
                    f"{where}: the {name} {value[:40]!r} holds a NUL or starts or ends with a space"
                )
        folder = None
        if folder_text:
            folder = Path(folder_text)
            if base is not None and not folder.is_absolute():
                folder = base / folder
        samples.append(SampleSpec(sample, status, stage, folder, link or None))
    return samples


def read_manifest(path: str | os.PathLike[str]) -> list[SampleSpec]:
    """The samples of the manifest file `path` (relative folders are relative to its folder)."""
    path = Path(path)
    return parse_manifest(read_limited(path, MAX_BYTES, "a manifest"), path, path.parent)


def folder_samples(folders: list[Path], names: list[str] | None) -> list[SampleSpec]:
    """The samples of result folders given on the command line: named after the folders, or by
    `names` (one per folder, in order). Whether each finished is read from the folder."""
    if names and len(names) != len(folders):
        raise InputError(
            f"--sample: {len(names)} name(s) for {len(folders)} result folder(s); give one --sample per "
            "folder, in the same order, or none (the folders' names are used)"
        )
    samples, seen = [], {}
    for index, folder in enumerate(folders):
        folder = Path(folder)
        name = names[index] if names else (folder.name or folder.resolve().name)
        where = f"--sample {name!r}" if names else str(folder)
        check_sample_name(name, where)
        if name in seen:
            raise InputError(
                f"{folder}: its sample name {name!r} is also that of {seen[name]}; name the samples with "
                "--sample, once per folder"
            )
        seen[name] = folder
        samples.append(SampleSpec(name, folder=folder))
    return samples
