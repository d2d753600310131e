"""A rerun with nothing to do does nothing: run.json records a fingerprint of what the outputs
follow from (parameters, report settings, the inputs' content, prepare's tables and every score
file by size and time), and a rerun that finds the same one, with the final outputs as written,
starts no worker and writes nothing; anything else that changed is redone, and only that."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import DATA, run_cli

pytestmark = pytest.mark.slow


def run_args(models: Path, outdir: Path, *extra) -> list:
    return [
        "run", DATA / "example.fa", "--outdir", outdir, "--dnabert-model", models / "dnabert-s",
        "--esm-model", models / "esm2", "--classifier", models / "classifier", "--shard-size", "8",
        "--devices", "cpu", *extra,
    ]  # fmt: skip


def stamps(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(test_models, tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("finished") / "out"
    run_cli(*run_args(test_models, outdir), check=True)
    return outdir


def test_a_rerun_of_a_finished_run_does_nothing(test_models, finished, tmp_path):
    outdir = tmp_path / "out"
    shutil.copytree(finished, outdir, copy_function=shutil.copy2)  # times kept: the fingerprint holds
    before = stamps(outdir)
    result = run_cli(*run_args(test_models, outdir))
    assert result.returncode == 0, result.stderr
    assert "is complete and current; nothing to do" in result.stderr
    assert "worker" not in result.stderr and "report:" not in result.stderr
    # In a copy the hash table's paths are new: only it (and the record of it) was written.
    changed = {k for k, v in stamps(outdir).items() if before.get(k) != v}
    assert changed <= {"work/hashes.tsv", ".virnucpro-outputs"}
    assert len((outdir / "work" / "request.sha256").read_text().strip()) == 64
    assert "request_sha256" not in json.loads((outdir / "run.json").read_text())
    before = stamps(outdir)
    again = run_cli(*run_args(test_models, outdir))
    assert "nothing to do" in again.stderr and stamps(outdir) == before  # not a byte written


@pytest.mark.parametrize(
    ("change", "redone"),
    [
        (("--min-viral-fraction", "0.3"), "report"),  # a report setting: the report alone
        (("--region-max-gap", "2"), "report"),
    ],
)
def test_a_changed_report_setting_redoes_the_report_alone(test_models, finished, tmp_path, change, redone):
    outdir = tmp_path / "out"
    shutil.copytree(finished, outdir, copy_function=shutil.copy2)
    scores = {k: v for k, v in stamps(outdir).items() if k.startswith("work/scores/shard_")}
    result = run_cli(*run_args(test_models, outdir, *change))
    assert result.returncode == 0, result.stderr
    assert "nothing to do" not in result.stderr and ": loaded " not in result.stderr
    assert "report: from" in result.stderr
    assert {k: v for k, v in stamps(outdir).items() if k.startswith("work/scores/shard_")} == scores
    again = run_cli(*run_args(test_models, outdir, *change))  # and then it is current again
    assert "nothing to do" in again.stderr


def test_a_score_file_made_again_redoes_the_report(test_models, finished, tmp_path):
    outdir = tmp_path / "out"
    shutil.copytree(finished, outdir, copy_function=shutil.copy2)
    (outdir / "work" / "scores" / "shard_00002.scores.parquet").unlink()
    result = run_cli(*run_args(test_models, outdir))
    assert result.returncode == 0, result.stderr
    assert "nothing to do" not in result.stderr and "scored shard_00002.scores.parquet" in result.stderr
    for name in ("prediction_results.txt", "chunks.tsv", "sequences.tsv", "viral.fa", "report.html"):
        assert (outdir / name).read_bytes() == (finished / name).read_bytes(), name
