"""Shared fixtures: paths to the bundled data and the read-only parity fixtures in ../shared, and a
runner for the real `virnucpro` command in a subprocess (the code under test, not a mock)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from virnucpro.files.layout import FINAL_OUTPUTS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"
PARITY = SHARED / "parity"
# Every final output, as `virnucpro run` and `report` must write them.
OUTPUTS = FINAL_OUTPUTS


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("COLUMNS", "120")
    return env


def run_cli(*args: str | os.PathLike, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m virnucpro ARGS...` in a subprocess, capturing text output."""
    result = subprocess.run(
        [sys.executable, "-m", "virnucpro", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(),
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"virnucpro {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def damage_a_data_page(path: Path, column: int = -1) -> None:
    """Flip a byte in the middle of a column chunk's data of one of our Parquet files (the last
    column by default: the vectors or the scores), leaving the footer whole."""
    import pyarrow.parquet as pq

    row_group = pq.read_metadata(path).row_group(0)
    chunk = row_group.column(column % row_group.num_columns)
    data = bytearray(path.read_bytes())
    data[chunk.data_page_offset + chunk.total_compressed_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture
def example_fasta() -> Path:
    return DATA / "example.fa"


def golden_or_skip() -> Path:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden fixtures not present at {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def example_reference(test_models, tmp_path_factory) -> Path:
    """`virnucpro run` on the bundled example with the test models and the test profile's settings,
    once per session: the outputs that the pipeline's must equal. In a session folder, not a test's
    (a passed test's folder is removed at once, see pyproject.toml)."""
    from nextflow_support import run_like_the_test_profile

    return run_like_the_test_profile(
        DATA / "example.fa", tmp_path_factory.mktemp("example-reference"), test_models
    )


@pytest.fixture(scope="session")
def inductor_cache(tmp_path_factory) -> Path:
    """One torch.compile cache for every in-process compilation of the session: inductor keeps the
    folder it first used, so a test's own folder (removed once it passes) would be gone for the next
    test's compilation."""
    folder = tmp_path_factory.mktemp("inductor")
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def test_models(tmp_path_factory) -> Path:
    """The small random models of `virnucpro make-test-models`, built once per test session."""
    from virnucpro.stages.make_test_models import make_test_models

    folder = tmp_path_factory.mktemp("test-models")
    make_test_models(folder)
    return folder
