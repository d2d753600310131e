"""`virnucpro calibrate` on a labelled synthetic set with known score distributions (chunk
P(virus) ~ Beta(4, 2) in viral sequences, Beta(2, 4) in the others, so the published rule has an
FDR near 0.19): the chosen thresholds meet the target FDR on held-out sequences drawn from the
same distributions, and `report --calibration` uses them and writes estimated FDRs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from synthetic import scripted_sample
from virnucpro.method.calibration import CHUNK_THRESHOLDS, load_calibration

TARGET = 0.05
CHUNKS_PER_SEQUENCE = 10


def labelled_set(folder: Path, seed: int, per_class: int = 150) -> tuple[Path, Path, list[Path], Path]:
    """A scripted sample of `per_class` viral and other sequences, and its labels file."""
    rng = np.random.default_rng(seed)
    script, labels = {}, ["sequence_id\tlabel"]
    for label, (a, b) in (("virus", (4, 2)), ("others", (2, 4))):
        for number in range(per_class):
            seq_id = f"{label}_{seed}_{number}"
            script[seq_id] = rng.beta(a, b, CHUNKS_PER_SEQUENCE).round(4).tolist()
            labels.append(f"{seq_id}\t{label}")
    fasta, prepared, scores = scripted_sample(folder, script, shard_size=5000)
    (folder / "labels.tsv").write_text("\n".join(labels) + "\n")
    return fasta, prepared, scores, folder / "labels.tsv"


def report_ok(fasta, prepared, scores, outdir, *extra) -> None:
    result = run_cli(
        "report", "--input", fasta, "--prepared", prepared, "--scores", *scores, "--outdir", outdir, *extra
    )
    assert result.returncode == 0, result.stderr


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def fdr(rows: list[dict[str, str]], called: str) -> tuple[float, int]:
    """FDR and number of the rows called virus, against the label in their sequence id."""
    calls = [r for r in rows if r["call"] == called]
    false = sum(not r["sequence_id"].startswith("virus_") for r in calls)
    return false / max(len(calls), 1), len(calls)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    fasta, prepared, scores, labels = labelled_set(folder / "set", seed=1)
    report_ok(fasta, prepared, scores, folder / "report")
    result = run_cli(
        "calibrate",
        "--chunks",
        folder / "report" / "chunks.tsv",
        "--labels",
        labels,
        "--outdir",
        folder / "cal",
    )
    assert result.returncode == 0, result.stderr
    return folder, scores, labels


def test_calibration_table_counts_the_labelled_calls(calibrated):
    folder, _, _ = calibrated
    chunks = [c for c in read_tsv(folder / "report" / "chunks.tsv") if c["call"] != "unscored"]
    rows = read_tsv(folder / "cal" / "calibration.tsv")
    chunk_rows = {r["threshold"]: r for r in rows if r["level"] == "chunk"}
    assert len(chunk_rows) == 201 and sum(r["level"] == "sequence" for r in rows) == 101
    positives = sum(c["sequence_id"].startswith("virus_") for c in chunks)
    for threshold in ("-1.00", "0.00", "0.37", "0.80"):
        called = [c for c in chunks if np.float32(c["margin"]) >= np.float32(threshold)]
        true = sum(c["sequence_id"].startswith("virus_") for c in called)
        row = chunk_rows[threshold]
        assert (int(row["calls"]), int(row["true_positives"])) == (len(called), true)
        assert row["recall"] == f"{true / positives:.4f}"
        assert row["fdr"] == f"{(len(called) - true) / len(called):.4f}"
        assert float(row["fdr_upper95"]) >= float(row["fdr"])
    chosen_rows = [
        (r["level"], r["chunk_margin_threshold"], r["threshold"]) for r in rows if r["chosen"] == "yes"
    ]
    chosen = json.loads((folder / "cal" / "calibration.json").read_text())["chosen"]
    margin, share = f"{chosen['chunk_margin_threshold']:.2f}", f"{chosen['min_viral_fraction']:.2f}"
    assert chosen_rows == [("chunk", margin, margin), ("sequence", margin, share)]
    published_fdr = float(chunk_rows["0.00"]["fdr"])
    assert 0.1 < published_fdr < 0.3  # the published rule is far from 5% FDR on this set
    assert chosen["chunk_margin_threshold"] > 0 and float(chunk_rows[f"{chosen['chunk_margin_threshold']:.2f}"][
        "fdr_upper95"
    ]) <= TARGET  # fmt: skip
    png = (folder / "cal" / "calibration_reliability.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_scores_and_chunk_tables_calibrate_alike(calibrated, tmp_path):
    folder, scores, labels = calibrated
    result = run_cli("calibrate", "--scores", *scores, "--labels", labels, "--outdir", tmp_path / "cal")
    assert result.returncode == 0, result.stderr
    from_chunks = json.loads((folder / "cal" / "calibration.json").read_text())
    from_scores = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    for key in ("chunk_true_positives", "chunk_false_positives", "sequence_true_positives", "chosen"):
        assert from_scores[key] == from_chunks[key], key
    assert (tmp_path / "cal" / "calibration.tsv").read_bytes() == (
        folder / "cal" / "calibration.tsv"
    ).read_bytes()
    # Same inputs, same bytes (the plot carries no date).
    run_cli("calibrate", "--scores", *scores, "--labels", labels, "--outdir", tmp_path / "again", check=True)
    for name in ("calibration.json", "calibration_reliability.png"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "cal" / name).read_bytes()


@pytest.mark.parametrize("seed", [2, 3])
def test_chosen_thresholds_meet_the_target_on_held_out_sequences(calibrated, tmp_path, seed):
    folder, _, _ = calibrated
    # Four times the calibration set: its sampling noise stays below the margin the 95% bound keeps.
    fasta, prepared, scores, _ = labelled_set(tmp_path / "held_out", seed=seed, per_class=600)
    report_ok(fasta, prepared, scores, tmp_path / "published")
    report_ok(
        fasta, prepared, scores, tmp_path / "calibrated", "--calibration", folder / "cal" / "calibration.json"
    )
    chunks = [c for c in read_tsv(tmp_path / "calibrated" / "chunks.tsv") if c["call"] != "unscored"]
    sequences = read_tsv(tmp_path / "calibrated" / "sequences.tsv")
    chunk_fdr, chunk_calls = fdr(chunks, "virus")
    sequence_fdr, sequence_calls = fdr(sequences, "virus")
    assert chunk_fdr <= TARGET and sequence_fdr <= TARGET
    assert chunk_calls > 1200 and sequence_calls > 450  # still finds most of the virus
    published_fdr, _ = fdr(read_tsv(tmp_path / "published" / "chunks.tsv"), "virus")
    assert published_fdr > 2 * TARGET
    # Every call has an estimated FDR within the target, no other row has one.
    for row in [*chunks, *sequences]:
        assert (row["estimated_fdr"] != "") == (row["call"] == "virus")
        assert row["estimated_fdr"] == "" or float(row["estimated_fdr"]) <= TARGET
    run = json.loads((tmp_path / "calibrated" / "run.json").read_text())
    calls = run["calls"]
    assert calls["rule"] == "calibrated" and calls["target_fdr"] == TARGET
    assert (
        calls["chunk_margin_threshold"] in CHUNK_THRESHOLDS.tolist() and calls["chunk_margin_threshold"] > 0
    )
    assert run["parameters"]["calibration"].endswith("calibration.json")
    # The original's two files keep the original's consensus.
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv"):
        assert (tmp_path / "calibrated" / name).read_bytes() == (tmp_path / "published" / name).read_bytes()


def test_target_fdr_picks_other_thresholds_from_the_same_calibration(calibrated):
    folder, _, _ = calibrated
    calibration, _ = load_calibration(folder / "cal" / "calibration.json")
    strict, _ = calibration.thresholds(0.03, "test")
    loose, _ = calibration.thresholds(0.2, "test")
    assert (
        CHUNK_THRESHOLDS[loose] < CHUNK_THRESHOLDS[calibration.chunk_index(TARGET)] < CHUNK_THRESHOLDS[strict]
    )


def test_calibration_errors_are_one_line(calibrated, tmp_path):
    folder, scores, labels = calibrated
    chunks = folder / "report" / "chunks.tsv"
    bad_labels = tmp_path / "bad.tsv"
    bad_labels.write_text("sequence_id\tlabel\nvirus_1_0\tphage\n")
    unrelated = tmp_path / "unrelated.tsv"
    unrelated.write_text("sequence_id\tlabel\nsomething_else\tvirus\nanother_thing\tothers\n")
    not_json = tmp_path / "calibration.json"
    not_json.write_text("{}")
    other_size = tmp_path / "other_size.json"
    content = json.loads((folder / "cal" / "calibration.json").read_text())
    assert content["provenance"]["chunk_size"] == 500  # from the run.json beside chunks.tsv
    content["provenance"]["chunk_size"] = 300
    content["provenance"]["sources"] = [{**s, "chunk_size": 300} for s in content["provenance"]["sources"]]
    other_size.write_text(json.dumps(content))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "calibration.tsv").write_text("a user's file\n")
    cases = [
        (["calibrate", "--chunks", chunks, "--labels", bad_labels, "--outdir", tmp_path / "a"], "line 2"),
        (["calibrate", "--chunks", chunks, "--labels", unrelated, "--outdir", tmp_path / "b"], "has a label"),
        (["calibrate", "--labels", labels, "--outdir", tmp_path / "c"], "--chunks"),
        (["calibrate", "--chunks", chunks, "--labels", labels, "--outdir", mine], "refusing to overwrite"),
        (
            ["report", "--input", folder / "set" / "input.fa", "--prepared", folder / "set" / "prepared",
             "--scores", *scores, "--outdir", tmp_path / "d", "--calibration", not_json],
            "not a calibration file",
        ),
        (
            ["report", "--input", folder / "set" / "input.fa", "--prepared", folder / "set" / "prepared",
             "--scores", *scores, "--outdir", tmp_path / "e", "--calibration", folder / "cal" / "calibration.json",
             "--target-fdr", "0.0001"],
            "give a larger --target-fdr",
        ),
        (
            ["report", "--input", folder / "set" / "input.fa", "--prepared", folder / "set" / "prepared",
             "--scores", *scores, "--outdir", tmp_path / "f", "--calibration", other_size],
            "calibrated on 300 bp chunks, but these are 500 bp",
        ),
    ]  # fmt: skip
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (mine / "calibration.tsv").read_text() == "a user's file\n"
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
    assert not (tmp_path / "f" / "chunks.tsv").exists()
