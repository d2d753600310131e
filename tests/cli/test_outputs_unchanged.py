"""Every output of `virnucpro run`, byte for byte, against a reference recorded before the package was
reorganised by stage (tests/data/reference_outputs.json): the bundled example, and a second input of
longer coding-like sequences cut into many shards. A change of any output digit fails here.

To record the reference again (only for an intended change of outputs, said in CHANGELOG.md):
    python tests/cli/test_outputs_unchanged.py /path/to/test-models
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
REFERENCE = TESTS / "data" / "reference_outputs.json"
# Records of when and where, not of what: they hold paths, sizes and mtimes.
VARYING = {"run.json", ".virnucpro-outputs", "hashes.tsv", "request.sha256"}
CASES = {
    "example": ("example.fa", []),
    "long-coding": ("long-coding.fa", ["--shard-size", "7"]),
}


def write_second_input(path: Path) -> Path:
    """24 sequences of 120 to 2,400 bp: most of sense codons (stop-free frames, so chunks are scored),
    every third reverse-complemented, every fourth plain random DNA."""
    rng = random.Random(18)
    sense = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
    sense = [c for c in sense if c not in ("TAA", "TAG", "TGA")]
    complement = str.maketrans("ACGT", "TGCA")
    lines = []
    for i in range(24):
        length = rng.randint(40, 800)
        if i % 4 == 3:
            bases = "".join(rng.choice("ACGT") for _ in range(3 * length))
        else:
            bases = "".join(rng.choice(sense) for _ in range(length))
        if i % 3 == 2:
            bases = bases.translate(complement)[::-1]
        lines.append(f">long{i} made {len(bases)} bp\n{bases}\n")
    path.write_text("".join(lines))
    return path


def run_case(name: str, models: Path, folder: Path) -> dict[str, str]:
    source, options = CASES[name]
    inputs = TESTS / "data" / source if name == "example" else write_second_input(folder / source)
    outdir = folder / f"out-{name}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "virnucpro",
            "run",
            str(inputs),
            "--outdir",
            str(outdir),
            "--dnabert-model",
            str(models / "dnabert-s"),
            "--esm-model",
            str(models / "esm2"),
            "--classifier",
            str(models / "classifier"),
            "--workers",
            "1",
            *options,
        ],
        check=True,
        capture_output=True,
    )
    places = {models: "<models>", inputs.parent: "<inputs>"}
    return {
        str(p.relative_to(outdir)): digest(p, places)
        for p in sorted(outdir.rglob("*"))
        if p.is_file() and p.name not in VARYING
    }


def digest(path: Path, places: dict[Path, str]) -> str:
    """sha256 of the file with the test's own folders named by placeholders; of a Parquet file, its
    columns in Arrow's IPC form and its metadata (whose checksum covers those folders, so it is left out)."""

    def placed(data: bytes) -> bytes:
        for folder, name in places.items():
            for spelling in {str(folder), str(folder.resolve())}:
                data = data.replace(spelling.encode(), name.encode())
        return data

    if path.suffix != ".parquet":
        return hashlib.sha256(placed(path.read_bytes())).hexdigest()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"virnucpro.metadata_sha256"}
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as stream:
        stream.write_table(table.replace_schema_metadata(None))
    content = sink.getvalue().to_pybytes() + b"".join(
        placed(k + b"=" + v + b"\n") for k, v in sorted(metadata.items())
    )
    return hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_equal_the_recorded_reference(name, test_models, tmp_path):
    recorded = json.loads(REFERENCE.read_text())[name]
    assert run_case(name, test_models, tmp_path) == recorded


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        reference = {name: run_case(name, Path(sys.argv[1]), Path(tmp)) for name in sorted(CASES)}
    REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    print(f"recorded {sum(map(len, reference.values()))} files in {REFERENCE}")
