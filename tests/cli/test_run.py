"""`virnucpro run` end to end on the bundled example with the small test models, on CPU: every
output with its columns, the consensus, byte-identical reruns, workers 1 vs 2, kill -9 and resume,
and refusal of a changed parameter."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import DATA, OUTPUTS, cli_env, run_cli
from synthetic import random_classifier
from virnucpro.files.layout import OUTDIR_MARKER, WORK_OUTPUTS, RunLayout
from virnucpro.report.tables import CHUNK_COLUMNS, SEQUENCE_COLUMNS

pytestmark = pytest.mark.slow

EXAMPLE = DATA / "example.fa"
# Results depend on these, so every comparison uses the same ones; 4 frames per shard gives 8 shards.
SHARD_SIZE = "4"


def run_args(
    models: Path, outdir: Path, *extra: str, classifier: Path | None = None, reads: Path = EXAMPLE
) -> list[str]:
    return [
        "run", str(reads), "--outdir", str(outdir),
        "--dnabert-model", str(models / "dnabert-s"), "--esm-model", str(models / "esm2"),
        "--classifier", str(classifier or models / "classifier"),
        "--shard-size", SHARD_SIZE, "--devices", "cpu", *extra,
    ]  # fmt: skip


def run_ok(models: Path, outdir: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli(*run_args(models, outdir, *extra))
    assert result.returncode == 0, result.stderr
    return result


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def run_json_without(path: Path, *keys: str) -> dict:
    content = json.loads(path.read_text())
    for key in keys:
        content.pop(key)
    return content


def assert_same_outputs(first: Path, second: Path, ignore_in_run_json=("timings",)) -> None:
    for name in OUTPUTS:
        if name == "run.json":
            assert run_json_without(first / name, *ignore_in_run_json) == run_json_without(
                second / name, *ignore_in_run_json
            )
        else:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.fixture(scope="module")
def baseline(test_models, tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("baseline") / "out"
    result = run_ok(test_models, outdir, "--workers", "2")
    assert "virnucpro run: 12 sequences" in result.stderr  # the final summary line
    return outdir


def test_every_output_with_its_columns(baseline):
    assert {p.name for p in baseline.iterdir()} == {*OUTPUTS, "work", OUTDIR_MARKER}
    layout = RunLayout(baseline)
    # Embeddings are scored in the workers and kept only with --keep-embeddings.
    assert sorted(p.name for p in layout.work.iterdir()) == sorted(set(WORK_OUTPUTS) - {"embeddings"})
    assert len(list(layout.scores.glob("shard_*.scores.parquet"))) == 8
    assert (
        (baseline / "prediction_results.txt")
        .read_text()
        .startswith("Sequence_ID\tPrediction\tscore1\tscore2\n")
    )
    assert (
        (baseline / "prediction_results_highestscore.csv").read_text().startswith("Modified_ID\tIs_Virus\n")
    )
    chunks = read_tsv(baseline / "chunks.tsv")
    assert tuple(chunks[0]) == CHUNK_COLUMNS and len(chunks) == 53
    sequences = read_tsv(baseline / "sequences.tsv")
    assert tuple(sequences[0]) == SEQUENCE_COLUMNS and len(sequences) == 12
    run = json.loads((baseline / "run.json").read_text())
    assert run["command"] == "run" and run["parameters"]["shard_size"] == 4
    assert run["parameters"]["dnabert_revision"].startswith("local:sha256=")
    assert set(run["timings"]) >= {"prepare_s", "embed_and_score_s", "report_s"}
    assert run["counts"]["frames"] == 30
    assert run["parameters"]["region_max_gap"] == 1 and run["parameters"]["calibration"] is None
    assert run["calls"] == {
        "rule": "published", "chunk_margin_threshold": 0.0, "min_viral_fraction": 0.5, "region_max_gap": 1,
        "region_min_chunks": 2, "confidence_high": 0.9, "confidence_medium": 0.7,
    }  # fmt: skip
    # The test classifier calls some chunks and sequences viral and some not.
    calls = {c["call"] for c in chunks}
    assert calls == {"virus", "others", "unscored"}
    viral_ids = {s["sequence_id"] for s in sequences if s["call"] == "virus"}
    assert viral_ids and viral_ids != {s["sequence_id"] for s in sequences if s["call"] != "unscored"}
    headers = [
        line[1:].split()[0]
        for line in (baseline / "viral.fa").read_text().splitlines()
        if line.startswith(">")
    ]
    assert headers == [s["sequence_id"] for s in sequences if s["call"] == "virus"]


def test_consensus_recomputed_from_prediction_results(baseline):
    frames = defaultdict(list)
    for row in read_tsv(baseline / "prediction_results.txt"):
        frames[row["Sequence_ID"][:-2]].append((float(row["score1"]), float(row["score2"])))
    consensus = {k: max(v[1] for v in f) >= max(v[0] for v in f) for k, f in frames.items()}
    highest = read_tsv(baseline / "prediction_results_highestscore.csv")
    assert [r["Modified_ID"] for r in highest] == sorted(consensus)
    assert {r["Modified_ID"]: r["Is_Virus"] == "True" for r in highest} == consensus
    for chunk in read_tsv(baseline / "chunks.tsv"):
        if chunk["chunk_id"] in consensus:
            assert chunk["call"] == ("virus" if consensus[chunk["chunk_id"]] else "others")
        else:
            assert chunk["call"] == "unscored" and chunk["n_frames"] == "0"
    viral_per_sequence = defaultdict(list)
    for chunk in read_tsv(baseline / "chunks.tsv"):
        if chunk["call"] != "unscored":
            viral_per_sequence[chunk["sequence_id"]].append(chunk["call"] == "virus")
    for sequence in read_tsv(baseline / "sequences.tsv"):
        calls = viral_per_sequence.get(sequence["sequence_id"])
        expected = "unscored" if not calls else "virus" if sum(calls) / len(calls) >= 0.5 else "others"
        assert sequence["call"] == expected


def test_two_runs_are_byte_identical_and_a_rerun_resumes(test_models, baseline, tmp_path):
    run_ok(test_models, tmp_path / "out", "--workers", "2")
    assert_same_outputs(baseline, tmp_path / "out")
    for first in sorted((baseline / "work" / "scores").glob("shard_*")):
        assert first.read_bytes() == (tmp_path / "out" / "work" / "scores" / first.name).read_bytes()
    # The same command again: nothing is recomputed, the outputs stay the same.
    work = tmp_path / "out" / "work"
    stamps = {p: p.stat().st_mtime_ns for p in work.rglob("*.parquet")}
    run_ok(test_models, tmp_path / "out", "--workers", "2")
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*.parquet")} == stamps
    assert_same_outputs(baseline, tmp_path / "out")


def test_one_worker_gives_the_same_outputs_as_two(test_models, baseline, tmp_path):
    run_ok(test_models, tmp_path / "one", "--workers", "1")
    assert_same_outputs(baseline, tmp_path / "one", ignore_in_run_json=("timings", "execution"))
    assert json.loads((tmp_path / "one" / "run.json").read_text())["execution"]["workers"] == 1


def wait_for(process: subprocess.Popen, pattern: str, folder: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        assert process.poll() is None, f"run ended before {pattern} appeared"
        assert time.monotonic() < deadline, f"{pattern} did not appear"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("kill_after", "extra"),
    [
        ("work/embeddings/shard_*.dnabert.parquet", ("--keep-embeddings",)),
        ("work/embeddings/shard_*.esm.parquet", ("--keep-embeddings",)),
        ("work/scores/shard_*.scores.parquet", ()),
    ],
)
def test_kill_9_then_the_same_command_finishes_the_work(test_models, baseline, tmp_path, kill_after, extra):
    outdir = tmp_path / "out"
    args = run_args(test_models, outdir, "--workers", "2", *extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "virnucpro", *args],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )
    try:
        wait_for(process, kill_after, outdir)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (outdir / "run.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in (outdir / "work").rglob("shard_*.parquet")}
    assert finished or kill_after.startswith("work/prepare")

    run_ok(test_models, outdir, "--workers", "2", *extra)
    # Shards finished before the kill were not recomputed; the outputs equal an uninterrupted run's.
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert_same_outputs(baseline, outdir, ignore_in_run_json=("timings", "execution"))


def test_changed_parameters_are_refused_and_force_starts_over(test_models, baseline, tmp_path):
    outdir = tmp_path / "out"
    shutil.copytree(baseline, outdir)
    changed = run_cli(*run_args(test_models, outdir, "--chunk-size", "300"))
    assert changed.returncode == 2
    message = changed.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("virnucpro: error:")
    assert "--chunk-size was 500, now 300" in message and "--force" in message
    config = json.loads((test_models / "classifier" / "config.json").read_text())
    random_classifier(
        tmp_path / "classifier", seed=3, dnabert_dim=config["dnabert_dim"], esm_dim=config["esm_dim"]
    )
    other = run_cli(*run_args(test_models, outdir, classifier=tmp_path / "classifier"))
    assert other.returncode == 2 and "--classifier was" in other.stderr
    precision = run_cli(*run_args(test_models, outdir, "--precision", "bf16", "--workers", "2"))
    assert precision.returncode == 2 and "--precision was 'fp32', now 'bf16'" in precision.stderr
    # Nothing was touched by the refused runs.
    assert_same_outputs(baseline, outdir)
    forced = run_cli(*run_args(test_models, outdir, "--chunk-size", "300", "--force"))
    assert forced.returncode == 0, forced.stderr
    assert json.loads((outdir / "run.json").read_text())["parameters"]["chunk_size"] == 300
    assert (outdir / "prediction_results.txt").read_bytes() != (
        baseline / "prediction_results.txt"
    ).read_bytes()


def test_input_without_any_stop_free_frame(test_models, tmp_path):
    """Nothing to embed or score: every output is still written, every sequence `unscored`."""
    reads = tmp_path / "short.fa"
    reads.write_text(">tiny\nAC\n>unknown\nNNNNNNNNNNNNNNNNNN\n>empty\n\n")
    outdir = tmp_path / "out"
    result = run_cli(*run_args(test_models, outdir, reads=reads))
    assert result.returncode == 0, result.stderr
    assert (outdir / "prediction_results.txt").read_text() == "Sequence_ID\tPrediction\tscore1\tscore2\n"
    assert (outdir / "prediction_results_highestscore.csv").read_text() == "Modified_ID\tIs_Virus\n"
    assert [s["call"] for s in read_tsv(outdir / "sequences.tsv")] == ["unscored"] * 3
    assert (outdir / "viral.fa").read_text() == ""
    assert (outdir / "viral_regions.tsv").read_text().count("\n") == 1  # the header only
    assert (outdir / "viral_regions.bed").read_text() == (outdir / "viral_regions.fa").read_text() == ""
    assert [s["kind"] for s in read_tsv(outdir / "sequences.tsv")] == ["none"] * 3
    assert {*OUTPUTS} <= {p.name for p in outdir.iterdir()}


def test_report_options_reach_the_report(test_models, baseline, tmp_path):
    """Region and confidence options change only the report (the work is kept) and land in run.json;
    an unreadable calibration is refused before anything is done."""
    outdir = tmp_path / "out"
    shutil.copytree(baseline, outdir)
    run_ok(test_models, outdir, "--workers", "2", "--region-max-gap", "3", "--confidence-high", "0.95")
    run = json.loads((outdir / "run.json").read_text())
    assert run["parameters"]["region_max_gap"] == 3 and run["calls"]["confidence_high"] == 0.95
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv", "viral.fa"):
        assert (outdir / name).read_bytes() == (baseline / name).read_bytes()
    broken = tmp_path / "calibration.json"
    broken.write_text("[]")
    before = {p: p.stat().st_mtime_ns for p in outdir.rglob("*")}
    refused = run_cli(*run_args(test_models, outdir, "--calibration", str(broken)))
    assert refused.returncode == 2 and "not a calibration file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in outdir.rglob("*")} == before
