"""The second hostile probe, held to the first one's standard: ownership decided per file, never
per folder; calibrations that cannot mislead; every number and structured file checked where it
enters; an interrupted calibrate that reruns; claim-gpus on duplicate ids and planted lock files;
spreadsheet files with a byte-order mark; refusals before the expensive stages; and no traceback
anywhere. Each case runs the real command on the tiny real models or on scripted scores."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_safety import copy_of, refused, run_args, snapshot

from conftest import DATA, cli_env, run_cli
from synthetic import scripted_sample, write_calibration_json
from virnucpro.files.layout import OUTDIR_MARKER, RUN_JSON, RunLayout

EXAMPLE = DATA / "example.fa"


@pytest.fixture(scope="module")
def finished(test_models, tmp_path_factory) -> Path:
    """A finished run on a copy of the example."""
    folder = tmp_path_factory.mktemp("finished")
    shutil.copy(EXAMPLE, folder / "reads.fa")
    result = run_cli(*run_args(test_models, folder / "reads.fa", folder / "out"))
    assert result.returncode == 0, result.stderr
    return folder


# --- 1. Ownership is decided per file ---


def test_a_users_work_files_are_never_taken_for_the_runs(test_models, tmp_path):
    """A user's own work/parameters.json, prepare tables and shard files are neither overwritten by
    a run nor removed by --force: both refuse, naming the file."""
    outdir = tmp_path / "proj"
    mine = {
        "work/parameters.json": '{"experiment": "mine"}\n',
        "work/prepare/chunk_frames.tsv": "my table\n",
        "work/prepare/prepare.json": "{}\n",
        "work/prepare/shards/shard_00001.nucleotide.fa": ">mine\nACGT\n",
    }
    for name, content in mine.items():
        (outdir / name).parent.mkdir(parents=True, exist_ok=True)
        (outdir / name).write_text(content)
    for extra in ([], ["--force"]):
        refused(
            run_cli(*run_args(test_models, EXAMPLE, outdir, *extra)),
            f"{outdir / 'work' / 'parameters.json'}: exists and was not written by virnucpro",
        )
    (outdir / "work" / "parameters.json").unlink()  # the prepare files are checked on their own
    refused(run_cli(*run_args(test_models, EXAMPLE, outdir, "--force")), "was not made by virnucpro run")
    (outdir / "work" / "parameters.json").write_text(mine["work/parameters.json"])
    assert {str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file()} == set(mine)
    for name, content in mine.items():
        assert (outdir / name).read_text() == content, name


@pytest.mark.slow
def test_force_in_a_finished_folder_removes_only_files_that_match_its_record(test_models, finished, tmp_path):
    """A user's files at output names of a finished run's work folders stop --force before it
    removes anything."""
    reads, outdir = copy_of(finished, tmp_path)
    layout = RunLayout(outdir)
    (layout.prepare.shards / "shard_00009.nucleotide.fa").write_text(">mine\nACGT\n")
    before = snapshot(outdir)
    refused(
        run_cli(*run_args(test_models, reads, outdir, "--force")),
        "shard_00009.nucleotide.fa: exists and was not written by virnucpro",
    )
    assert snapshot(outdir) == before
    (layout.prepare.shards / "shard_00009.nucleotide.fa").unlink()
    (layout.embeddings / "shard_00009.dnabert.parquet").write_bytes(b"my own parquet")
    refused(run_cli(*run_args(test_models, reads, outdir, "--force")), "shard_00009.dnabert.parquet")
    assert (layout.embeddings / "shard_00009.dnabert.parquet").read_bytes() == b"my own parquet"


@pytest.mark.slow
def test_a_users_file_at_an_output_name_of_a_finished_folder_is_refused(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    for path in outdir.glob("viral_regions.*"):
        path.unlink()
    (outdir / "viral_regions.bed").write_text("mine\n")
    before = snapshot(outdir)
    refused(
        run_cli(*run_args(test_models, reads, outdir)),
        f"{outdir / 'viral_regions.bed'}: was changed since virnucpro wrote it",
    )
    assert snapshot(outdir) == before


@pytest.mark.slow
def test_report_with_misordered_inputs_into_a_finished_folder_touches_nothing(test_models, tmp_path):
    text = EXAMPLE.read_text()
    split = text.index(">read_3")
    (tmp_path / "a.fa").write_text(text[:split])
    (tmp_path / "b.fa").write_text(text[split:])
    outdir = tmp_path / "out"
    assert run_cli(*run_args(test_models, [tmp_path / "a.fa", tmp_path / "b.fa"], outdir)).returncode == 0
    layout = RunLayout(outdir)
    before = snapshot(outdir)
    swapped = run_cli(
        "report", "--input", tmp_path / "b.fa", "--input", tmp_path / "a.fa", "--prepared",
        layout.prepare.folder, "--scores", layout.scores, "--outdir", outdir,
    )  # fmt: skip
    refused(swapped, f"{tmp_path / 'b.fa'}: is not the input the prepare folder was made from")
    assert snapshot(outdir) == before


@pytest.mark.slow
def test_an_out_of_range_region_value_on_a_finished_folder_is_one_line_and_touches_nothing(
    test_models, finished, tmp_path
):
    reads, outdir = copy_of(finished, tmp_path)
    before = snapshot(outdir)
    for option in ("--region-min-chunks", "--region-max-gap"):
        result = run_cli(*run_args(test_models, reads, outdir, option, "100000000000000000000"))
        refused(result, f"'{option}'", "2147483647")
        assert result.returncode == 2
    assert snapshot(outdir) == before


def test_a_record_that_is_not_ours_makes_the_folder_foreign(tmp_path):
    """A file named like the record but without its signature line: nothing there is ours."""
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / OUTDIR_MARKER).write_text('{"format": "something else"}\n')
    (prepared / "chunk_frames.tsv").write_text("mine\n")
    refused(
        run_cli("prepare", EXAMPLE, "--outdir", prepared),
        f"{prepared / OUTDIR_MARKER}: not a record of virnucpro",
    )
    assert (prepared / "chunk_frames.tsv").read_text() == "mine\n"
    assert sorted(p.name for p in prepared.iterdir()) == sorted([OUTDIR_MARKER, "chunk_frames.tsv"])


# --- 2. Calibration that cannot mislead ---


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A scripted labelled set (virus chunks score high, the others low, with some overlap), its
    report (chunks.tsv beside its run.json) and its labels."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(3)
    script, labels = {}, ["sequence_id\tlabel"]
    for label, (a, b) in (("virus", (6, 2)), ("others", (2, 6))):
        for number in range(40):
            script[f"{label}_{number}"] = rng.beta(a, b, 4).round(4).tolist()
            labels.append(f"{label}_{number}\t{label}")
    fasta, prepared, scores = scripted_sample(folder / "set", script, shard_size=100)
    (folder / "labels.tsv").write_text("\n".join(labels) + "\n")
    result = run_cli(
        "report", "--input", fasta, "--prepared", prepared, "--scores", *scores, "--outdir", folder / "report"
    )
    assert result.returncode == 0, result.stderr
    return folder, scores


def report_args(folder: Path, scores: list[Path]) -> list:
    """`virnucpro report` of the labelled set (without --outdir)."""
    return [
        "report",
        "--input",
        folder / "set" / "input.fa",
        "--prepared",
        folder / "set" / "prepared",
        "--scores",
        *scores,
    ]


def calibrate(*args) -> subprocess.CompletedProcess:
    return run_cli("calibrate", *args, "--target-fdr", "0.2")


def test_labels_without_both_classes_are_refused(labelled, tmp_path):
    folder, _ = labelled
    only_virus = tmp_path / "labels.tsv"
    only_virus.write_text(
        "".join(
            line + "\n" for line in (folder / "labels.tsv").read_text().splitlines() if "others" not in line
        )
    )
    result = calibrate(
        "--chunks", folder / "report" / "chunks.tsv", "--labels", only_virus, "--outdir", tmp_path / "cal"
    )
    refused(result, f"{only_virus}: no sequence is labelled others")
    assert not (tmp_path / "cal").exists()


def test_a_chunk_table_or_score_file_given_twice_is_refused(labelled, tmp_path):
    folder, scores = labelled
    chunks = folder / "report" / "chunks.tsv"
    labels = folder / "labels.tsv"
    copy = tmp_path / "copy" / "chunks.tsv"
    copy.parent.mkdir()
    shutil.copy(chunks, copy)
    shutil.copy(folder / "report" / RUN_JSON, copy.parent / RUN_JSON)
    relative = os.path.relpath(chunks, Path.cwd())
    cases = [
        (["--chunks", chunks, "--chunks", chunks], "given twice to --chunks"),
        (["--chunks", chunks, "--chunks", f"./{relative}"], "given twice to --chunks"),
        (["--chunks", chunks, "--chunks", copy], "this chunk is given in"),
        (["--scores", scores[0], scores[0]], "given twice to --scores"),
    ]
    for arguments, message in cases:
        refused(calibrate(*arguments, "--labels", labels, "--outdir", tmp_path / "cal"), message)
    assert not (tmp_path / "cal").exists()


def test_a_chunk_table_without_its_run_json_is_refused(labelled, tmp_path):
    folder, _ = labelled
    lonely = tmp_path / "chunks.tsv"
    shutil.copy(folder / "report" / "chunks.tsv", lonely)
    result = calibrate("--chunks", lonely, "--labels", folder / "labels.tsv", "--outdir", tmp_path / "cal")
    refused(result, f"{lonely}: no run.json beside it")


def test_a_calibration_is_refused_for_scores_of_another_classifier(labelled, tmp_path):
    """Whatever it was made from, a calibration records the classifier (and chunk size) and is
    refused for scores of another one; one without that record is refused too."""
    folder, scores = labelled
    labels = folder / "labels.tsv"
    for source in (["--chunks", folder / "report" / "chunks.tsv"], ["--scores", *scores]):
        outdir = tmp_path / source[0].strip("-")
        assert calibrate(*source, "--labels", labels, "--outdir", outdir).returncode == 0
        content = json.loads((outdir / "calibration.json").read_text())
        assert content["provenance"]["chunk_size"] == 500
        assert [s["classifier_sha256"] for s in content["provenance"]["sources"]] == ["5c" * 32] * (
            len(source) - 1
        )
    other = write_calibration_json(tmp_path / "other", classifier_sha256="ab" * 32)
    content = json.loads(other.read_text())
    del content["provenance"]["classifier_sha256"]
    (tmp_path / "unknown.json").write_text(json.dumps(content))
    report = report_args(folder, scores)
    refused(
        run_cli(*report, "--outdir", tmp_path / "r1", "--calibration", other),
        "calibrated for another classifier",
    )
    refused(
        run_cli(*report, "--outdir", tmp_path / "r2", "--calibration", tmp_path / "unknown.json"),
        "no 'classifier_sha256'",
    )
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_a_calibration_from_score_files_knows_their_chunk_size(labelled, test_models, tmp_path):
    """Made with --scores of 500 bp chunks, it is refused by a run of 300 bp chunks before any work."""
    folder, scores = labelled
    assert (
        calibrate(
            "--scores", *scores, "--labels", folder / "labels.tsv", "--outdir", tmp_path / "cal"
        ).returncode
        == 0
    )
    outdir = tmp_path / "out"
    result = run_cli(
        *run_args(
            test_models,
            EXAMPLE,
            outdir,
            "--chunk-size",
            "300",
            "--target-fdr",
            "0.2",
            "--calibration",
            tmp_path / "cal" / "calibration.json",
        )
    )
    refused(result, "calibrated on 500 bp chunks, but this run's chunks are 300 bp")
    assert not outdir.exists()


# --- 3. Numbers nobody checked ---


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["chunk_true_positives"].__setitem__(0, "Infinity"),
            "Infinity is not a number JSON allows",
        ),
        (
            lambda c: c.__setitem__("chunk_positives", 10**30),
            "chunk_positives 1000000000000000000000000000000 is not",
        ),
        (lambda c: c.__setitem__("target_fdr", "1e400"), "the number 1e400 is too large"),
        (lambda c: c["provenance"].__setitem__("classifier_sha256", 12345), "records no classifier_sha256"),
    ],
    ids=["Infinity count", "huge count", "1e400", "integer sha256"],
)
def test_numbers_in_a_calibration_are_checked(labelled, tmp_path, edit, message):
    folder, scores = labelled
    content = json.loads(write_calibration_json(tmp_path / "cal", classifier_sha256="5c" * 32).read_text())
    edit(content)
    # Infinity and 1e400 are written as JSON numbers, as a hand-edit would
    text = json.dumps(content).replace('"Infinity"', "Infinity").replace('"1e400"', "1e400")
    (tmp_path / "edited.json").write_text(text)
    result = run_cli(
        *report_args(folder, scores), "--outdir", tmp_path / "out", "--calibration", tmp_path / "edited.json"
    )
    refused(result, message)
    assert result.returncode == 2 and not (tmp_path / "out").exists()


def test_run_info_is_checked_and_a_bad_one_never_reaches_run_json(labelled, tmp_path):
    folder, scores = labelled
    report = report_args(folder, scores)
    bad = tmp_path / "info.json"
    for content, message in (
        ('{"versions": 5}', "--run-info sets 'versions', which report writes itself"),
        ('{"timings": {"embed_s": "slow"}}', "timings must be an object of seconds"),
        ('{"nextflow": {"x": NaN}}', "NaN is not a number JSON allows"),
        ("[" * 10_000 + "]" * 10_000, "nested"),
    ):
        bad.write_text(content)
        refused(run_cli(*report, "--outdir", tmp_path / "out", "--run-info", bad), message)
    assert not (tmp_path / "out").exists()
    # A run.json edited by hand afterwards is no longer the report's: the next report says so.
    assert run_cli(*report, "--outdir", tmp_path / "out").returncode == 0
    run = json.loads((tmp_path / "out" / RUN_JSON).read_text())
    (tmp_path / "out" / RUN_JSON).write_text(json.dumps({**run, "versions": 5}))
    refused(run_cli(*report, "--outdir", tmp_path / "out"), "run.json: was changed since virnucpro wrote it")


# --- 4. An interrupted calibrate reruns ---


def test_an_interrupted_calibrate_reruns_cleanly(labelled, tmp_path):
    """Killed after calibration.tsv and the plot were written (a `.tmp-` of calibration.json left
    by the dead writer), or stopped by a full disk: the same command finishes the job."""
    folder, _ = labelled
    args = [
        "--chunks",
        folder / "report" / "chunks.tsv",
        "--labels",
        folder / "labels.tsv",
        "--outdir",
        tmp_path / "cal",
    ]
    assert calibrate(*args).returncode == 0
    reference = (tmp_path / "cal" / "calibration.json").read_bytes()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / "cal" / "calibration.json").unlink()
    (tmp_path / "cal" / f".tmp-calibration.json.{dead.stdout.strip()}.x1").write_text('{"format": ')
    result = calibrate(*args)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cal" / "calibration.json").read_bytes() == reference
    assert not list((tmp_path / "cal").glob(".tmp-*"))

    # A write that fails (a file-size limit: calibration.json is the largest output) is one line
    # and leaves no temporary file; the rerun without the limit completes.
    size = max(p.stat().st_size for p in (tmp_path / "cal").iterdir() if p.name != "calibration.json") + 1

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    limited = subprocess.run(
        [sys.executable, "-m", "virnucpro", "calibrate", *map(str, args), "--target-fdr", "0.2"],
        capture_output=True, text=True, env=cli_env(), preexec_fn=limit,
    )  # fmt: skip
    refused(limited, "calibration.json", "File too large")
    assert not (tmp_path / "cal" / "calibration.json").exists()
    assert not list((tmp_path / "cal").glob(".tmp-*"))
    result = calibrate(*args)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cal" / "calibration.json").read_bytes() == reference


# --- 5. claim-gpus ---


def claim(count: int, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**cli_env(), "VIRNUCPRO_GPU_LOCKS": str(tmp_path / "locks"), **env}
    environment.pop("VIRNUCPRO_SIMULATED_GPUS", None)
    return subprocess.run(
        [sys.executable, "-m", "virnucpro", "claim-gpus", str(count), "--", "true"],
        env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_gpu_listed_twice_is_refused_at_once(tmp_path):
    result = claim(2, tmp_path, CUDA_VISIBLE_DEVICES="0,0")
    refused(result, "CUDA_VISIBLE_DEVICES=0,0: GPU 0 is listed twice")


def test_lock_files_planted_by_someone_else_are_refused(tmp_path):
    """A link in the shared lock folder is not followed (its target is not created), a FIFO does
    not block, and a folder that others may write without the sticky bit, or that belongs to
    another user, is not used."""
    locks = tmp_path / "locks"
    locks.mkdir()
    target = tmp_path / "created-by-the-claim"
    (locks / "gpu-0.lock").symlink_to(target)
    refused(
        claim(1, tmp_path, CUDA_VISIBLE_DEVICES="0"), "gpu-0.lock: a link or special file, not a lock file"
    )
    assert not target.exists() and not target.is_symlink()
    (locks / "gpu-0.lock").unlink()
    os.mkfifo(locks / "gpu-0.lock")
    refused(claim(1, tmp_path, CUDA_VISIBLE_DEVICES="0"), "gpu-0.lock")
    (locks / "gpu-0.lock").unlink()
    assert claim(1, tmp_path, CUDA_VISIBLE_DEVICES="0").returncode == 0
    if os.geteuid() == 0:  # root may give the folder away
        os.chown(locks, 12345, 12345)
        refused(claim(1, tmp_path, CUDA_VISIBLE_DEVICES="0"), "belongs to user id 12345")
        os.chown(locks, 0, 0)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    moved = claim(1, tmp_path, CUDA_VISIBLE_DEVICES="0", VIRNUCPRO_GPU_LOCKS=str(shared))
    assert moved.returncode == 0  # made ours: the sticky bit set
    assert shared.stat().st_mode & 0o1777 == 0o1777


# --- 6. Spreadsheet files ---


def test_labels_saved_with_a_byte_order_mark_are_read(labelled, tmp_path):
    folder, _ = labelled
    labels = tmp_path / "labels.tsv"
    labels.write_bytes(b"\xef\xbb\xbf" + (folder / "labels.tsv").read_bytes().replace(b"\n", b"\r\n"))
    result = calibrate(
        "--chunks", folder / "report" / "chunks.tsv", "--labels", labels, "--outdir", tmp_path / "cal"
    )
    assert result.returncode == 0, result.stderr


# --- 7. Refusals before the expensive stages ---


def test_a_calibration_of_another_chunk_size_is_refused_before_any_work(test_models, tmp_path):
    calibration = write_calibration_json(tmp_path / "cal", chunk_size=300)
    outdir = tmp_path / "out"
    refused(
        run_cli(*run_args(test_models, EXAMPLE, outdir, "--calibration", calibration)),
        "calibrated on 300 bp chunks, but this run's chunks are 500 bp",
    )
    assert not outdir.exists()


@pytest.mark.parametrize("alias", ["./ and no ./", "hard link"])
def test_one_input_under_two_names_is_refused_before_any_work(test_models, tmp_path, alias):
    reads = tmp_path / "reads.fa"
    shutil.copy(EXAMPLE, reads)
    if alias == "hard link":
        other = tmp_path / "same.fa"
        os.link(reads, other)
    else:
        other = Path(f"{tmp_path}/./reads.fa")
    outdir = tmp_path / "out"
    refused(run_cli(*run_args(test_models, [reads, other], outdir)), f"{other}: given twice (as {reads} too)")
    assert not outdir.exists()


def test_score_files_that_do_not_record_their_chunk_size_cannot_be_calibrated(labelled, tmp_path):
    """Scores of a classifier that does not know its chunk size (a hand-made .pth): calibrate says
    so and how to calibrate instead."""
    from virnucpro.files.score_files import read_scores, write_scores

    folder, scores = labelled
    table = read_scores(scores[0])
    metadata = {k: v for k, v in table.metadata.items() if k not in ("classifier_chunk_size", "rows")}
    unsized = tmp_path / "shard_00001.scores.parquet"
    write_scores(unsized, table.ids, table.score_others, table.score_virus, metadata)
    result = calibrate("--scores", unsized, "--labels", folder / "labels.tsv", "--outdir", tmp_path / "cal")
    refused(result, f"{unsized} (its metadata): records no chunk size", "calibrate from the chunks.tsv")


# --- No traceback anywhere ---

EXPLODE = """
import sys
from pathlib import Path
import typer
from virnucpro.cli import app, main
from virnucpro.files.outdir import make_writable_folder

@app.command("explode")
def explode(outdir: Path = typer.Option(None, "--outdir")) -> None:
    if outdir is not None:
        make_writable_folder(outdir)
    raise ZeroDivisionError("a bug\\non two lines")

sys.argv = ["virnucpro", "explode", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("where", ["output folder", "temporary folder"])
def test_an_unexpected_exception_is_one_line_with_a_crash_log(tmp_path, where):
    env = {**cli_env(), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    extra = ["--outdir", str(tmp_path / "out")] if where == "output folder" else []
    result = subprocess.run([sys.executable, "-c", EXPLODE, *extra], env=env, capture_output=True, text=True)
    assert result.returncode == 70
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(
        "virnucpro: internal error: ZeroDivisionError: a bug; please report it (details in "
    )
    log = Path(lines[0].rsplit("details in ", 1)[1].rstrip(")"))
    assert log.parent == (tmp_path / "out" if where == "output folder" else tmp_path / "tmp")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError: a bug" in text
    assert "explode" in text


def test_a_workers_bug_goes_to_the_crash_log_with_its_traceback(tmp_path, monkeypatch):
    """A bug in an embedding worker reaches the parent as text (InternalError): the crash log holds
    the worker's traceback as well as the parent's."""
    from virnucpro.cli import write_crash_log
    from virnucpro.errors import InternalError

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr("virnucpro.errors._output_folder", [])  # no command ran in this process
    try:
        raise InternalError(
            "worker 1 (cpu) failed embedding x: KeyError: 'y'", "Traceback (in the worker)\nKeyError: 'y'\n"
        )
    except InternalError as err:
        log = Path(write_crash_log(err))
    assert log.parent == tmp_path and oct(log.stat().st_mode & 0o777) == "0o600"
    text = log.read_text()
    assert "InternalError: worker 1 (cpu) failed embedding x" in text and "Traceback (in the worker)" in text
