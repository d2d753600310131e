"""Scoring where the embeddings are: `virnucpro embed --classifier` scores each shard in the embedding
workers and writes the scores `predict` writes from the same embeddings; embeddings are written only
with --keep-embeddings (float32, or float16 recorded as such); resume finds complete score files,
reads kept embeddings back when only the scores are missing, and embeds again a kept file whose data
page is damaged behind an intact footer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, cli_env, damage_a_data_page, run_cli
from virnucpro.files.embedding_files import is_complete, read_embeddings, read_metadata
from virnucpro.files.ownership import Record, entry_of
from virnucpro.files.score_files import read_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("prepared")
    run_cli("prepare", DATA / "example.fa", "--outdir", folder, "--shard-size", "6", "-q", check=True)
    return sorted((folder / "shards").iterdir())


def models(test_models) -> list:
    return [
        "--dnabert-model",
        test_models / "dnabert-s",
        "--esm-model",
        test_models / "esm2",
        "--devices",
        "cpu",
    ]


def scoring(test_models) -> list:
    return [*models(test_models), "--classifier", test_models / "classifier"]


@pytest.fixture(scope="module")
def separate(shards, test_models, tmp_path_factory) -> Path:
    """embed, then predict: the two stages as they were."""
    folder = tmp_path_factory.mktemp("separate")
    run_cli("embed", *shards, "--outdir", folder / "embeddings", *models(test_models), "-q", check=True)
    embeddings = sorted((folder / "embeddings").glob("*.parquet"))
    run_cli(
        "predict",
        *embeddings,
        "--classifier",
        test_models / "classifier",
        "--outdir",
        folder / "scores",
        "-q",
        check=True,
    )
    return folder


def names(folder: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in folder.glob(pattern))


def assert_same_scores(folder: Path, reference: Path) -> None:
    """Same ids and score bytes; the metadata equal but for the embedding files' own hashes, which
    only scores made from files can record."""
    expected = names(reference, "*.scores.parquet")
    assert expected and names(folder, "*.scores.parquet") == expected
    for name in expected:
        got, want = read_scores(folder / name), read_scores(reference / name)
        assert got.ids == want.ids
        assert got.score_others.tobytes() == want.score_others.tobytes()
        assert got.score_virus.tobytes() == want.score_virus.tobytes()
        per_file = ("dnabert_sha256", "esm_sha256", "metadata_sha256")  # of a file, or of the metadata itself
        assert {k: v for k, v in got.metadata.items() if k.split(".")[-1] not in per_file} == {
            k: v for k, v in want.metadata.items() if k.split(".")[-1] not in per_file
        }
        assert list(got.metadata).index("esm.model") > list(got.metadata).index("dnabert.model")


def test_scores_made_in_the_workers_equal_predicts_and_no_embedding_is_written(
    shards, test_models, separate, tmp_path
):
    out = tmp_path / "out"
    result = run_cli("embed", *shards, "--outdir", out, *scoring(test_models), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert_same_scores(out, separate / "scores")
    assert names(out, "*.dnabert.parquet") == names(out, "*.esm.parquet") == []
    assert "(not kept)" in result.stderr and "scored shard_00001.scores.parquet" in result.stderr
    # A rerun finds every score file complete and starts no worker.
    again = run_cli("embed", *shards, "--outdir", out, *scoring(test_models))
    assert again.returncode == 0 and "worker" not in again.stderr, again.stderr
    assert f"{len(shards) // 2} of {len(shards) // 2} shard(s) complete" in again.stderr


def test_kept_embeddings_equal_embeds_and_are_read_back_when_only_scores_are_missing(
    shards, test_models, separate, tmp_path
):
    out = tmp_path / "out"
    run_cli("embed", *shards, "--outdir", out, *scoring(test_models), "--keep-embeddings", "-q", check=True)
    for name in names(separate / "embeddings", "*.parquet"):
        assert (out / name).read_bytes() == (separate / "embeddings" / name).read_bytes(), name
    assert_same_scores(out, separate / "scores")
    # As after a kill between writing a shard's embeddings and its scores: the scores alone are made
    # again, from the kept files, and no model is loaded.
    scores = sorted(out.glob("*.scores.parquet"))
    for path in scores[:2]:
        path.unlink()
    result = run_cli("embed", *shards, "--outdir", out, *scoring(test_models), "--keep-embeddings")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("back (kept) to score it") == 4 and ": loaded " not in result.stderr
    assert_same_scores(out, separate / "scores")


def test_a_damaged_page_behind_an_intact_footer_is_found_when_read_for_scoring(
    shards, test_models, separate, tmp_path
):
    out = tmp_path / "out"
    run_cli("embed", *shards, "--outdir", out, *scoring(test_models), "--keep-embeddings", "-q", check=True)
    damaged = out / "shard_00001.esm.parquet"
    damage_a_data_page(damaged)
    # Damage after the file was written makes it another file than the record lists: a rerun
    # refuses to replace it. Damage that the record saw (made as the file was written) is found
    # by the worker that reads it.
    refused = run_cli("embed", *shards, "--outdir", out, *scoring(test_models), "--keep-embeddings")
    assert refused.returncode == 2 and f"{damaged}: was changed since virnucpro wrote it" in refused.stderr
    Record(out).append({damaged.name: entry_of(damaged)})
    expected = {
        k: v for k, v in read_metadata(damaged).items() if k in ("model", "revision", "precision", "pooling")
    }
    assert is_complete(damaged, expected, int(read_metadata(damaged)["rows"]))  # the footer alone is whole
    with pytest.raises(OSError, match="CRC checksum"):
        read_embeddings(damaged)
    (out / "shard_00001.scores.parquet").unlink()
    result = run_cli("embed", *shards, "--outdir", out, *scoring(test_models), "--keep-embeddings")
    assert result.returncode == 0, result.stderr
    assert (
        "shard_00001.esm.parquet: damaged" in result.stderr
        and "embedded shard_00001.esm.parquet" in result.stderr
    )
    assert damaged.read_bytes() == (separate / "embeddings" / damaged.name).read_bytes()  # made again
    assert_same_scores(out, separate / "scores")


def test_float16_storage_records_its_dtype_and_scores_stay_those_of_float32(
    shards, test_models, separate, tmp_path
):
    out = tmp_path / "out"
    run_cli(
        "embed", *shards, "--outdir", out, *scoring(test_models), "--keep-embeddings", "--embedding-dtype", "float16",
        "-q", check=True,
    )  # fmt: skip
    assert_same_scores(out, separate / "scores")
    for name in names(separate / "embeddings", "*.parquet"):
        half, full = read_embeddings(out / name), read_embeddings(separate / "embeddings" / name)
        assert half.metadata["dtype"] == "float16" and "dtype" not in full.metadata
        assert half.ids == full.ids and half.vectors.dtype == np.float32
        np.testing.assert_allclose(half.vectors, full.vectors, rtol=1e-3, atol=1e-3)
        assert (out / name).stat().st_size < (separate / "embeddings" / name).stat().st_size
    # float16 files are not complete for a float32 request: they are made again, in float32.
    result = run_cli("embed", *shards, "--outdir", out, *models(test_models), "-q")
    assert result.returncode == 0, result.stderr
    for name in names(separate / "embeddings", "*.parquet"):
        assert (out / name).read_bytes() == (separate / "embeddings" / name).read_bytes()


def test_keep_embeddings_without_a_classifier_is_refused(shards, test_models, tmp_path):
    result = run_cli(
        "embed", *shards, "--outdir", tmp_path / "out", *models(test_models), "--keep-embeddings"
    )
    assert result.returncode == 2 and "go with --classifier" in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_scores_in_the_workers_and_keeps_embeddings_only_when_asked(
    test_models, example_reference, tmp_path
):
    plain = tmp_path / "plain"
    run_cli(
        "run",
        DATA / "example.fa",
        "--outdir",
        plain,
        *scoring(test_models),
        "--shard-size",
        "7",
        "-q",
        check=True,
    )
    assert not (plain / "work" / "embeddings").exists()
    kept = tmp_path / "kept"
    run_cli(
        "run", DATA / "example.fa", "--outdir", kept, *scoring(test_models), "--shard-size", "7", "--keep-embeddings",
        "-q", check=True,
    )  # fmt: skip
    assert names(kept / "work" / "embeddings", "*.parquet")
    for name in ("prediction_results.txt", "chunks.tsv", "sequences.tsv", "report.html", "viral.fa"):
        assert (plain / name).read_bytes() == (kept / name).read_bytes(), name


def test_a_run_killed_at_any_moment_resumes_to_the_same_bytes(shards, test_models, separate, tmp_path):
    """kill -9 of the whole process group while the workers embed and score; the rerun finishes the
    work and every score equals predict's."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "virnucpro", "embed", *map(str, shards), "--outdir", str(out)]
    command += [*map(str, scoring(test_models)), "--keep-embeddings", "--workers", "2"]
    process = subprocess.Popen(command, env=cli_env(), stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("*.parquet")):
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    run_cli("embed", *shards, "--outdir", out, *scoring(test_models), "--keep-embeddings", "-q", check=True)
    assert_same_scores(out, separate / "scores")
    assert not list(out.glob(".tmp-*"))
