"""`virnucpro summarize`: a row per sample whose counts equal the sample's own files, the same data
in summary.json, summary.html and MultiQC custom content; result folders on the command line or a
manifest (property-tested like every parser of a user's file); one line and a non-zero exit for bad
input; never a file that is not ours overwritten; and the real `multiqc` (when on PATH) reading the
custom content into General Statistics with summary.tsv's values."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, run_cli
from summary_rows import expected_row, read_tsv
from synthetic import scripted_sample, write_calibration_json
from virnucpro.errors import InputError
from virnucpro.files.manifest import SampleSpec, parse_manifest
from virnucpro.report.summary import COLUMNS, sequence_counts
from virnucpro.stages.report import ReportOptions, report

MULTIQC_CONFIG = REPO / "assets" / "multiqc_config.yaml"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Three samples' folders: `s1` (published rule: a phage, a host contig with a prophage-like
    region, an unscored read, a weak read), `s 2` (calibrated, a space in its name) and `s3`, a run
    that stopped before its report (no run.json)."""
    root = tmp_path_factory.mktemp("summary")
    host = [0.05] * 11 + [0.97] * 14 + [0.05] * 15
    fasta, prepared, scores = scripted_sample(
        root / "work-s1",
        {"host_contig": host, "phage": [0.93] * 6, "unscored": [None, None], "weak": [0.6, 0.8, 0.55]},
        shard_size=50,
    )
    report(fasta, prepared, scores, root / "s1", quiet=True)
    fasta, prepared, scores = scripted_sample(
        root / "work-s2", {"a": [0.99] * 4, "b": [0.02] * 3, "c": [0.75, 0.8]}, shard_size=3
    )
    calibration = write_calibration_json(root / "calibration", classifier_sha256="5c" * 32)
    options = ReportOptions(calibration=calibration, target_fdr=0.05)
    report(fasta, prepared, scores, root / "s 2", quiet=True, options=options)
    (root / "s3").mkdir()
    (root / "s3" / "sequences.tsv").write_text("a stray file of an unfinished run\n")
    return root


def summarize_folders(results: Path, outdir: Path, *extra: str):
    return run_cli("summarize", results / "s1", results / "s 2", results / "s3", "--outdir", outdir, *extra)


def test_rows_equal_each_samples_own_files(results, tmp_path):
    done = summarize_folders(results, tmp_path / "summary")
    assert done.returncode == 0, done.stderr
    assert "s3: no run.json (the run did not finish): sample s3 is listed as failed" in done.stderr
    rows = read_tsv(tmp_path / "summary" / "summary.tsv")
    assert list(rows[0]) == list(COLUMNS)
    assert [row["sample"] for row in rows] == ["s1", "s 2", "s3"]
    for row, name in zip(rows[:2], ["s1", "s 2"], strict=True):
        assert {k: v for k, v in row.items() if k != "sample"} == expected_row(results / name)
    s1, s2, s3 = rows
    # What the scripted scores make: s1 has a viral phage and a weak read (each one region), and a host contig with a
    # prophage-like region; s2 is calibrated.
    assert (s1["viral_sequences"], s1["sequences_with_regions"], s1["viral_high"]) == ("2", "3", "1")
    assert int(s1["viral_bases_in_regions"]) > 7000 and s1["calibrated"] == "no"
    assert (s2["calibrated"], s2["target_fdr"]) == ("yes", "0.05")
    assert s3 == {**dict.fromkeys(COLUMNS, ""), "sample": "s3", "status": "failed"}
    content = json.loads((tmp_path / "summary" / "summary.json").read_text())
    assert content["columns"] == list(COLUMNS)
    for row, entry in zip(rows, content["samples"], strict=True):
        assert {k: "" if v is None else str(v) for k, v in entry.items()} == row
    page = (tmp_path / "summary" / "summary.html").read_text()
    links = [unquote(html.unescape(link)) for link in re.findall(r'href="([^"]*)"', page)]
    # One link per finished sample in the bars and one in the table, relative to the summary's folder.
    assert len(links) == 4 and not any(Path(link).is_absolute() for link in links)
    assert {(tmp_path / "summary" / link).resolve() for link in links} == {
        (results / name / "report.html").resolve() for name in ("s1", "s 2")
    }
    assert "<script" not in page and "http" not in page


def test_links_are_relative_to_the_summary(results):
    """A summary written beside the sample folders links to `s1/report.html` and `s%202/...`."""
    outdir = results / "summary-beside"
    done = summarize_folders(results, outdir, "--quiet")
    assert done.returncode == 0, done.stderr
    page = (outdir / "summary.html").read_text()
    assert 'href="../s1/report.html"' in page and 'href="../s%202/report.html"' in page
    assert "s3/report.html" not in page


def test_manifest_gives_order_statuses_and_links(results, tmp_path):
    manifest = results / "manifest.tsv"
    manifest.write_text(
        "sample\tstatus\tfailed_stage\tfolder\treport\n"
        "gamma\tfailed\tEMBED\t\t\n"
        "alpha\tfinished\t\ts1\talpha/report.html\n"
        "beta\tfinished\t\ts 2\t\n"
    )
    done = run_cli("summarize", "--manifest", manifest, "--outdir", tmp_path / "out", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = read_tsv(tmp_path / "out" / "summary.tsv")
    assert [(r["sample"], r["status"], r["failed_stage"]) for r in rows] == [
        ("gamma", "failed", "EMBED"),
        ("alpha", "finished", ""),
        ("beta", "finished", ""),
    ]
    assert {k: v for k, v in rows[1].items() if k != "sample"} == expected_row(results / "s1")
    page = (tmp_path / "out" / "summary.html").read_text()
    assert 'href="alpha/report.html"' in page
    assert "failed in EMBED" in page


def test_failed_run_folder_keeps_prepares_counts(results, tmp_path):
    """A `virnucpro run` folder whose prepare finished but no shard was scored: failed in EMBED, with
    prepare's counts."""
    from virnucpro.files.layout import PARAMETERS_JSON

    folder = tmp_path / "stopped"
    shutil.copytree(results / "work-s1" / "prepared", folder / "work" / "prepare")
    (folder / "work" / PARAMETERS_JSON).write_text("{}")
    done = run_cli("summarize", folder, "--outdir", tmp_path / "out", "--sample", "stopped sample")
    assert done.returncode == 0, done.stderr
    (row,) = read_tsv(tmp_path / "out" / "summary.tsv")
    finished = expected_row(results / "s1")
    assert (row["sample"], row["status"], row["failed_stage"]) == ("stopped sample", "failed", "EMBED")
    assert [row[k] for k in ("input_files", "sequences", "bases", "chunks")] == [
        finished[k] for k in ("input_files", "sequences", "bases", "chunks")
    ]
    assert row["viral_sequences"] == "" and row["calibrated"] == ""


def test_sequences_are_streamed_in_blocks(results, monkeypatch):
    """Counted a block at a time (a sample of 10^7 sequences is never held): tiny blocks give the
    same counts."""
    import virnucpro.report.summary as rows

    whole = sequence_counts(results / "s1" / "sequences.tsv")
    monkeypatch.setattr(rows, "_BLOCK_BYTES", 256)
    assert sequence_counts(results / "s1" / "sequences.tsv") == whole


def one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("virnucpro: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_input_is_one_line(results, tmp_path):
    out = tmp_path / "out"
    one_line_error(run_cli("summarize", results / "missing", "--outdir", out), "missing: no such folder")
    one_line_error(
        run_cli("summarize", results / "s1", "--sample", "a", "--sample", "b", "--outdir", out),
        "--sample: 2 name(s) for 1 result folder(s)",
    )
    one_line_error(run_cli("summarize", "--outdir", out), "give the result folders")
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"sample\tstatus\tfolder\nx\tfinished\t{results / 's3'}\n")
    one_line_error(
        run_cli("summarize", "--manifest", manifest, "--outdir", out),
        "s3: no run.json, but the manifest says sample 'x' finished",
    )
    manifest.write_text("sample\tstate\nx\tfinished\n")
    one_line_error(
        run_cli("summarize", "--manifest", manifest, "--outdir", out), "line 1: unknown column 'state'"
    )
    one_line_error(
        run_cli("summarize", "--manifest", manifest, results / "s1", "--outdir", out),
        "give no result folders",
    )
    # A damaged table: the line and the record are named.
    broken = tmp_path / "broken"
    shutil.copytree(results / "s1", broken)
    lines = (broken / "sequences.tsv").read_text().splitlines(keepends=True)
    fields = lines[2].split("\t")
    fields[3] = "many"
    lines[2] = "\t".join(fields)
    (broken / "sequences.tsv").write_text("".join(lines))
    one_line_error(
        run_cli("summarize", broken, "--outdir", out),
        f"sequences.tsv, line 3 ({fields[0]}): n_chunks 'many' is not a count",
    )
    # Files of two runs in one folder: refused, not summed.
    shutil.copy(results / "s 2" / "sequences.tsv", broken / "sequences.tsv")
    one_line_error(run_cli("summarize", broken, "--outdir", out), "run the sample's report again")
    assert not out.exists()  # a refused command leaves no trace


def test_never_overwrites_a_file_it_did_not_write(results, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.tsv").write_text("my own table\n")
    done = run_cli("summarize", results / "s1", "--outdir", out)
    one_line_error(done, "summary.tsv: exists and was not written by virnucpro")
    assert (out / "summary.tsv").read_text() == "my own table\n"
    assert sorted(p.name for p in out.iterdir()) == ["summary.tsv"]
    (out / "summary.tsv").unlink()
    assert run_cli("summarize", results / "s1", "--outdir", out).returncode == 0
    first = (out / "summary.json").read_bytes()
    done = run_cli("summarize", results / "s1", results / "s 2", "--outdir", out)  # ours: replaced
    assert done.returncode == 0, done.stderr
    assert len(read_tsv(out / "summary.tsv")) == 2 and (out / "summary.json").read_bytes() != first


# --- The manifest's parser, property-tested (see tests/unit/test_properties.py) ---

SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
VALID = (
    b"sample\tstatus\tfailed_stage\tfolder\treport\n"
    b"s1\tfinished\t\tresults/s1\ts1/report.html\n"
    b"s2\tfailed\tREPORT\t\t\n"
)
CELLS = st.sampled_from(
    [
        "s1",
        "s2",
        "finished",
        "failed",
        "",
        "PREPARE",
        "EMBED",
        "REPORT",
        "x/y",
        " ",
        "\x00",
        "é",
        "\r",
        "sample",
    ]
) | st.text(max_size=8)


def parsed(raw: bytes) -> list[SampleSpec] | None:
    try:
        return parse_manifest(raw, "manifest.tsv", Path("/base"))
    except InputError as err:
        assert "\n" not in str(err).strip(), str(err)
        assert str(err).startswith("manifest.tsv"), str(err)
        return None


@SETTINGS
@given(
    st.binary(max_size=300)
    | st.builds(lambda cut, extra: VALID[:cut] + extra, st.integers(0, len(VALID)), st.binary(max_size=20))
)
def test_any_bytes_give_samples_or_one_line(raw):
    parsed(raw)


@SETTINGS
@given(st.lists(st.lists(CELLS, min_size=1, max_size=6), min_size=1, max_size=6))
def test_any_table_gives_samples_or_one_line(table):
    raw = "\n".join("\t".join(row) for row in table).encode("utf-8", "surrogatepass")
    samples = parsed(raw)
    if samples is None:
        return
    # What is accepted is usable: unique names, known statuses, a folder for each finished sample.
    assert len({s.sample for s in samples}) == len(samples)
    for sample in samples:
        assert sample.status in ("finished", "failed")
        assert sample.status == "failed" or (sample.folder is not None and not sample.failed_stage)


def test_valid_manifest_parses():
    samples = parse_manifest(VALID, "m.tsv", Path("/base"))
    assert samples == [
        SampleSpec("s1", "finished", "", Path("/base/results/s1"), "s1/report.html"),
        SampleSpec("s2", "failed", "REPORT", None, None),
    ]
    # A byte-order mark and Windows line ends are fine.
    assert parse_manifest(b"\xef\xbb\xbf" + VALID.replace(b"\n", b"\r\n"), "m.tsv", Path("/base")) == samples


# --- MultiQC ---


def test_multiqc_reads_the_custom_content(results, tmp_path):
    """The real multiqc on the custom content of two finished samples and a failed one: General
    Statistics hold each finished sample's values, equal to summary.tsv's; the failed sample is in
    the samples table only."""
    multiqc = shutil.which("multiqc")
    if multiqc is None:
        pytest.skip("multiqc is not on PATH (pip install 'virnucpro[multiqc]')")
    summary = tmp_path / "summary"
    assert summarize_folders(results, summary, "--quiet").returncode == 0
    done = subprocess.run(
        [
            multiqc,
            "--config",
            str(MULTIQC_CONFIG),
            "--outdir",
            str(tmp_path / "multiqc"),
            "--no-ansi",
            str(summary),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = tmp_path / "multiqc" / "multiqc_data"
    assert (tmp_path / "multiqc" / "multiqc_report.html").is_file()
    stats = {row["Sample"]: row for row in read_tsv(data / "multiqc_general_stats.txt")}
    rows = {row["sample"]: row for row in read_tsv(summary / "summary.tsv")}
    assert sorted(stats) == ["s 2", "s1"]

    def value(sample: str, column: str) -> float:
        (key,) = [k for k in stats[sample] if k.endswith(f"-{column}")]
        return float(stats[sample][key])

    for sample in ("s1", "s 2"):
        row = {k: int(v) for k, v in rows[sample].items() if v.isdigit()}
        assert value(sample, "viral_sequences_percent") == pytest.approx(
            100 * row["viral_sequences"] / row["sequences"]
        )
        assert value(sample, "viral_bases_in_regions") == row["viral_bases_in_regions"]
        assert value(sample, "viral_high_percent") == pytest.approx(
            100 * row["viral_high"] / row["viral_sequences"]
        )
    table = {row["Sample"]: row for row in read_tsv(data / "multiqc_virnucpro_samples_table.txt")}
    assert sorted(table) == ["s 2", "s1", "s3"]
    assert "failed" in table["s3"].values()
    bars = {row["Sample"]: row for row in read_tsv(data / "multiqc_virnucpro_sequences_plot.txt")}
    assert sorted(bars) == ["s 2", "s1"]


# --- The Nextflow modules ---


@pytest.mark.nextflow
@pytest.mark.parametrize("stub", [False, True], ids=["real", "stub"])
def test_summary_and_multiqc_modules(results, tmp_path, stub):
    """SUMMARY and MULTIQC as the pipeline is to wire them (tests/nextflow/summary.nf): two finished
    samples whose REPORT results folders are both named `results`, and a failed one; summary.tsv
    published at the outdir's top equals `virnucpro summarize`'s, each report linked where REPORT
    publishes it, MultiQC's report under multiqc/ (when multiqc is on PATH). -stub-run: the same
    file names."""
    from nextflow_support import nextflow_env, run_nextflow

    for name, sample in (("a", "s1"), ("b", "s 2")):
        shutil.copytree(results / sample, tmp_path / name / "results")
    outcomes = tmp_path / "outcomes.tsv"
    outcomes.write_text(
        f"gamma\tfailed\tEMBED\t\ns1\tfinished\t\t{tmp_path / 'a' / 'results'}\n"
        f"s 2\tfinished\t\t{tmp_path / 'b' / 'results'}\n"
    )
    multiqc = shutil.which("multiqc") is not None or stub
    args = [
        "run", REPO / "tests" / "nextflow" / "summary.nf", "-c", REPO / "tests" / "nextflow" / "summary.config",
        "--outcomes", outcomes, "--outdir", tmp_path / "out", "--skip_multiqc", str(not multiqc).lower(),
    ]  # fmt: skip
    done = run_nextflow(*args, *(["-stub-run"] if stub else []), cwd=tmp_path, env=nextflow_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.tsv", "summary.json", "summary.html", *(["multiqc"] if multiqc else [])]
    )
    if multiqc:
        assert (out / "multiqc" / "multiqc_report.html").is_file()
        assert (out / "multiqc" / "multiqc_data").is_dir()
    if stub:
        return
    assert (
        run_cli(
            "summarize", results / "s1", results / "s 2", "--outdir", tmp_path / "cli", "--quiet"
        ).returncode
        == 0
    )
    rows = read_tsv(out / "summary.tsv")
    assert [(r["sample"], r["status"], r["failed_stage"]) for r in rows] == [
        ("gamma", "failed", "EMBED"),
        ("s1", "finished", ""),
        ("s 2", "finished", ""),
    ]
    assert rows[1:] == read_tsv(tmp_path / "cli" / "summary.tsv")
    page = (out / "summary.html").read_text()
    assert 'href="s1/report.html"' in page and 'href="s%202/report.html"' in page
    if multiqc:
        stats = read_tsv(out / "multiqc" / "multiqc_data" / "multiqc_general_stats.txt")
        assert sorted(row["Sample"] for row in stats) == ["s 2", "s1"]
