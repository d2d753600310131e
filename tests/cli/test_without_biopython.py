"""The embedding stage runs where Biopython is not installed (the lent GPU machine has none): `embed`,
`embed-dna`, `embed-protein` and the worker pool, in a Python whose `import Bio` fails, write the
same files as with Biopython. `bench/gpu.py --smoke` runs the same way in test_bench_gpu.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, run_cli
from without_biopython import env_without_biopython


def run_without_biopython(blocker: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "virnucpro", *map(str, args)],
        capture_output=True,
        text=True,
        env=env_without_biopython(blocker),
    )


def parquet_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    folder = tmp_path_factory.mktemp("prepared")
    run_cli("prepare", DATA / "example.fa", "--outdir", folder, "--shard-size", "8", "-q", check=True)
    return sorted((folder / "shards").glob("*.nucleotide.fa")), sorted(
        (folder / "shards").glob("*.protein.faa")
    )


def test_the_blocker_hides_biopython(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import Bio"],
        capture_output=True,
        text=True,
        env=env_without_biopython(tmp_path),
    )
    assert result.returncode == 1 and "No module named 'Bio'" in result.stderr
    # What needs Biopython says so (prepare reads user FASTA/FASTQ with it).
    refused = run_without_biopython(tmp_path, "prepare", DATA / "example.fa", "--outdir", tmp_path / "p")
    assert refused.returncode != 0 and "Bio" in refused.stderr


@pytest.mark.slow
def test_embedding_commands_write_the_same_files_without_biopython(shards, test_models, tmp_path):
    nucleotide, protein = shards
    models = ["--dnabert-model", test_models / "dnabert-s", "--esm-model", test_models / "esm2"]
    common = ["--devices", "cpu", "-q"]
    with_bio = tmp_path / "with"
    run_cli("embed", *nucleotide, *protein, "--outdir", with_bio, *models, *common, check=True)

    blocker = tmp_path / "blocker"
    combined = tmp_path / "combined"
    # Two workers: the spawned pool imports the worker's modules anew, without Biopython too.
    result = run_without_biopython(
        blocker, "embed", *nucleotide, *protein, "--outdir", combined, *models, *common, "--workers", "2"
    )
    assert result.returncode == 0, result.stderr
    separate = tmp_path / "separate"
    for command, files, model in (
        ("embed-dna", nucleotide, test_models / "dnabert-s"),
        ("embed-protein", protein, test_models / "esm2"),
    ):
        result = run_without_biopython(
            blocker, command, *files, "--outdir", separate, "--model", model, *common
        )
        assert result.returncode == 0, result.stderr
    expected = parquet_bytes(with_bio)
    assert len(expected) == 2 * len(nucleotide)
    assert parquet_bytes(combined) == expected
    assert parquet_bytes(separate) == expected
