"""Nothing lost, nothing silently wrong, through the real commands on the tiny real models:
user files are never overwritten or deleted, resume never reuses stale work, faults (disk full,
read-only folders, corrupt files, hostile weights) are one line with nothing half-finished."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, OUTPUTS, cli_env, damage_a_data_page, run_cli
from synthetic import prepared_example, random_classifier, write_random_embeddings
from virnucpro.errors import InputError
from virnucpro.files.embedding_files import is_complete, read_embeddings, write_embeddings
from virnucpro.files.layout import OUTDIR_MARKER, RUN_JSON, RunLayout
from virnucpro.stages.predict import predict_files

EXAMPLE = DATA / "example.fa"
IS_ROOT = os.geteuid() == 0
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ virnucpro [A-Z]+ ")


def run_args(models: Path, reads, outdir: Path, *extra: str) -> list:
    inputs = reads if isinstance(reads, list) else [reads]
    return [
        "run", *inputs, "--outdir", outdir,
        "--dnabert-model", models / "dnabert-s", "--esm-model", models / "esm2",
        "--classifier", models / "classifier", "--shard-size", "8", "--devices", "cpu",
        "--keep-embeddings",  # resume is checked over every file a run can make
        *extra,
    ]  # fmt: skip


def refused(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed with one line (besides timestamped log lines) holding every fragment."""
    assert result.returncode != 0, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("virnucpro: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder` with its modification time and bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def parquet_mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.rglob("shard_*.parquet"))}


@pytest.fixture(scope="module")
def finished(test_models, tmp_path_factory) -> Path:
    """A finished run on a copy of the example."""
    folder = tmp_path_factory.mktemp("finished")
    reads = folder / "reads.fa"
    shutil.copy(EXAMPLE, reads)
    result = run_cli(*run_args(test_models, reads, folder / "out"))
    assert result.returncode == 0, result.stderr
    return folder


def copy_of(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the finished run: (reads, outdir)."""
    shutil.copytree(finished, tmp_path / "copy", symlinks=True)
    return tmp_path / "copy" / "reads.fa", tmp_path / "copy" / "out"


# --- User data is never overwritten or deleted ---


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True])
def test_an_output_given_as_input_is_refused_before_any_work(test_models, finished, tmp_path, force):
    _, outdir = copy_of(finished, tmp_path)
    before = snapshot(outdir)
    extra = ["--force"] if force else []
    viral = outdir / "viral.fa"
    refused(run_cli(*run_args(test_models, viral, outdir, *extra)), f"{viral}: this input is {viral}")
    link = tmp_path / "link.fa"
    link.symlink_to(viral)
    refused(run_cli(*run_args(test_models, link, outdir, *extra)), "links to", str(viral))
    hard = tmp_path / "hard.fa"
    os.link(viral, hard)
    refused(run_cli(*run_args(test_models, hard, outdir, *extra)), str(hard))
    shard = RunLayout(outdir).prepare.shards / "shard_00001.nucleotide.fa"
    refused(run_cli(*run_args(test_models, shard, outdir, *extra)), "lies inside", str(outdir / "work"))
    assert snapshot(outdir) == before


@pytest.mark.slow
def test_force_removes_only_what_the_run_made(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    layout = RunLayout(outdir)
    (outdir / "notes.txt").write_text("mine")
    (layout.work / "mine.txt").write_text("mine")
    (layout.embeddings / "keep").mkdir()
    (layout.embeddings / "keep" / "data.txt").write_text("mine")
    (layout.prepare.folder / "my_table.tsv").write_text("mine")
    stale = parquet_mtimes(outdir)
    result = run_cli(*run_args(test_models, reads, outdir, "--chunk-size", "300", "--force"))
    assert result.returncode == 0, result.stderr
    for path in ("notes.txt", "work/mine.txt", "work/embeddings/keep/data.txt", "work/prepare/my_table.tsv"):
        assert (outdir / path).read_text() == "mine", path
    assert json.loads((outdir / RUN_JSON).read_text())["parameters"]["chunk_size"] == 300
    assert all(
        parquet_mtimes(outdir)[name] != stale[name] for name in stale if name in parquet_mtimes(outdir)
    )


def test_a_users_file_at_an_output_name_is_never_overwritten(tmp_path, test_models):
    outdir = tmp_path / "mine"
    outdir.mkdir()
    (outdir / "viral.fa").write_text(">my precious contig\nACGT\n")
    for extra in ([], ["--force"]):
        refused(
            run_cli(*run_args(test_models, EXAMPLE, outdir, *extra)),
            f"{outdir / 'viral.fa'}: exists and was not written by virnucpro",
        )
    assert (outdir / "viral.fa").read_text() == ">my precious contig\nACGT\n"
    assert sorted(p.name for p in outdir.iterdir()) == ["viral.fa"]


def test_a_second_command_into_a_folder_being_written_is_refused(tmp_path, test_models):
    """While `prepare` writes a folder (held mid-input by a FIFO), a second prepare or run into the
    same folder is refused in one line; the first finishes, and the folder is free again after."""
    fifo = tmp_path / "reads.fifo"
    os.mkfifo(fifo)
    outdir = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "virnucpro", "prepare", str(fifo), "--outdir", str(outdir)],
        env=cli_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    data = EXAMPLE.read_bytes()
    with open(fifo, "wb") as writer:
        writer.write(data[: len(data) // 2])
        writer.flush()
        # prepare made its staging folder: it holds the folder and waits for the rest of its input
        for _ in range(600):
            if list(outdir.glob(".prepare-*")) or first.poll() is not None:
                break
            time.sleep(0.1)
        assert list(outdir.glob(".prepare-*")), first.stderr.read() if first.poll() is not None else ""
        busy = "another virnucpro command is writing this folder now"
        refused(run_cli("prepare", EXAMPLE, "--outdir", outdir), str(outdir), busy)
        refused(run_cli(*run_args(test_models, EXAMPLE, outdir)), str(outdir), busy)
        writer.write(data[len(data) // 2 :])
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert run_cli("prepare", EXAMPLE, "--outdir", outdir).returncode == 0


def test_a_foreign_work_folder_is_not_mixed_with(tmp_path, test_models):
    """A `work/` that virnucpro run did not make (Nextflow's, say) is left alone."""
    outdir = tmp_path / "out"
    (outdir / "work" / "ab" / "123").mkdir(parents=True)
    (outdir / "work" / "ab" / "123" / ".command.sh").write_text("echo")
    for extra in ([], ["--force"]):
        refused(run_cli(*run_args(test_models, EXAMPLE, outdir, *extra)), "was not made by virnucpro run")
    assert (outdir / "work" / "ab" / "123" / ".command.sh").read_text() == "echo"


def test_prepare_never_replaces_files_it_did_not_write(tmp_path):
    for name, content in (("input_sequences.tsv", "my table\n"), ("shards/my_notes.txt", "mine\n")):
        outdir = tmp_path / name.replace("/", "_")
        (outdir / name).parent.mkdir(parents=True, exist_ok=True)
        (outdir / name).write_text(content)
        refused(run_cli("prepare", EXAMPLE, "--outdir", outdir), str(outdir / name))
        assert (outdir / name).read_text() == content


def test_a_stage_never_writes_over_its_input(tmp_path):
    outdir = tmp_path / "embeddings"
    outdir.mkdir()
    victim = outdir / "shard_00001.dnabert.parquet"
    write_embeddings(victim, ["a"], np.ones((1, 4), dtype=np.float32), {"model": "m"})
    before = victim.read_bytes()
    refused(run_cli("embed-dna", victim, "--outdir", outdir), f"{victim}: this input is {victim}")
    assert victim.read_bytes() == before


@pytest.mark.slow
def test_symlinks_at_output_names_are_replaced_not_written_through(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    precious = tmp_path / "precious.fa"
    precious.write_text(">keep\nACGT\n")
    (outdir / "viral.fa").unlink()
    (outdir / "viral.fa").symlink_to(precious)
    (outdir / "chunks.tsv").unlink()
    (outdir / "chunks.tsv").symlink_to(tmp_path / "dangling")
    result = run_cli(*run_args(test_models, reads, outdir))
    assert result.returncode == 0, result.stderr
    assert precious.read_text() == ">keep\nACGT\n" and not (tmp_path / "dangling").exists()
    assert not (outdir / "viral.fa").is_symlink()
    assert (outdir / "viral.fa").read_bytes() == (finished / "out" / "viral.fa").read_bytes()


@pytest.mark.slow
def test_temporary_files_of_interrupted_writes_are_removed_by_the_next_run(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    layout = RunLayout(outdir)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = dead.stdout.strip()
    stale = [
        outdir / f".tmp-chunks.tsv.{pid}.x1",
        outdir / f".tmp-report.html.{pid}.x2",
        layout.embeddings / f".tmp-shard_00001.esm.parquet.{pid}.x3",
        layout.scores / f".tmp-shard_00002.scores.parquet.{pid}.x4",
        layout.prepare.folder / f".tmp-chunk_frames.tsv.{pid}.x5",
    ]
    live = outdir / f".tmp-viral.fa.{os.getpid()}.x6"  # a writer that is still running
    for path in [*stale, live]:
        path.write_text("partial")
    result = run_cli(*run_args(test_models, reads, outdir))
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale) and live.exists()


@pytest.mark.parametrize("outdir", ["/", "~", "FILE"])
def test_unusable_output_folders_are_refused(tmp_path, test_models, outdir):
    target = Path(outdir).expanduser() if outdir != "FILE" else tmp_path / "a_file"
    if outdir == "FILE":
        target.write_text("not a folder")
    line = refused(run_cli(*run_args(test_models, EXAMPLE, target)), "--outdir")
    assert ("is a file" in line) if outdir == "FILE" else ("refusing to write into" in line)


# --- Resume never reuses stale work ---


@pytest.mark.slow
def test_the_input_is_identified_by_its_content(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    before = parquet_mtimes(outdir)
    os.utime(reads, ns=(reads.stat().st_atime_ns, reads.stat().st_mtime_ns + 10**9))  # touch
    result = run_cli(*run_args(test_models, reads, outdir))
    assert result.returncode == 0, result.stderr
    assert parquet_mtimes(outdir) == before  # nothing recomputed
    outputs = snapshot(outdir)
    # The same size, one letter changed, the modification time put back.
    status = reads.stat()
    data = bytearray(reads.read_bytes())
    position = data.index(b"\n", data.index(b">read_3")) + 3
    data[position] = ord("A") if data[position] != ord("A") else ord("C")
    reads.write_bytes(bytes(data))
    os.utime(reads, ns=(status.st_atime_ns, status.st_mtime_ns))
    refused(run_cli(*run_args(test_models, reads, outdir)), f"{reads}: INPUT content changed", "--force")
    assert snapshot(outdir) == outputs  # the refused rerun touched nothing
    forced = run_cli(*run_args(test_models, reads, outdir, "--force"))
    assert forced.returncode == 0, forced.stderr
    assert (outdir / "chunks.tsv").read_bytes() != (finished / "out" / "chunks.tsv").read_bytes()


@pytest.mark.slow
def test_a_changed_shard_recomputes_its_embeddings_and_scores(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    layout = RunLayout(outdir)
    before = parquet_mtimes(outdir)
    shard = layout.prepare.shards / "shard_00002.nucleotide.fa"
    lines = shard.read_text().splitlines()
    lines[1] = lines[1][:-1] + ("A" if lines[1][-1] != "A" else "C")
    shard.write_text("\n".join(lines) + "\n")
    result = run_cli(*run_args(test_models, reads, outdir))
    assert result.returncode == 0, result.stderr
    after = parquet_mtimes(outdir)
    changed = sorted(name for name in before if after[name] != before[name])
    assert changed == ["shard_00002.dnabert.parquet", "shard_00002.scores.parquet"]
    recorded = read_embeddings(layout.embeddings / "shard_00002.dnabert.parquet").metadata
    import hashlib

    assert recorded["source_sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest()


@pytest.mark.slow
def test_corruption_inside_a_parquet_file_is_detected_and_recomputed(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    layout = RunLayout(outdir)
    before = parquet_mtimes(outdir)
    # Score files are read whole to check them (they are small); embedding files by their footer
    # alone, so a damaged kept embedding is found when it is read to score its shard again.
    for path in (
        layout.embeddings / "shard_00003.esm.parquet",
        layout.scores / "shard_00003.scores.parquet",
        layout.scores / "shard_00001.scores.parquet",
    ):
        damage_a_data_page(path)
    # Standalone stages name the corrupt file in one line.
    refused(
        run_cli(
            "predict", *sorted(layout.embeddings.glob("shard_00003.*")), "--classifier",
            test_models / "classifier", "--outdir", tmp_path / "p",
        ),
        "shard_00003.esm.parquet", "corrupt",
    )  # fmt: skip
    # A rerun does not replace a file that no longer matches what the run wrote (it cannot tell it
    # from a user's): it names it and touches nothing. Once it is removed, the run recomputes it,
    # and the results equal the uncorrupted run's.
    changed = snapshot(outdir)
    refused(
        run_cli(*run_args(test_models, reads, outdir)),
        "shard_00003.esm.parquet: was changed since virnucpro wrote it",
    )
    assert snapshot(outdir) == changed
    for path in (
        layout.embeddings / "shard_00003.esm.parquet",
        layout.scores / "shard_00003.scores.parquet",
        layout.scores / "shard_00001.scores.parquet",
    ):
        path.unlink()
    result = run_cli(*run_args(test_models, reads, outdir))
    assert result.returncode == 0, result.stderr
    after = parquet_mtimes(outdir)
    # Shard 1 is scored again from its kept embeddings; shard 3's damaged ESM-2 file is embedded again
    # (byte-identical to the one before the damage) and the shard scored.
    assert sorted(name for name in before if after[name] != before[name]) == [
        "shard_00001.scores.parquet",
        "shard_00003.esm.parquet",
        "shard_00003.scores.parquet",
    ]
    assert (layout.embeddings / "shard_00003.esm.parquet").read_bytes() == (
        finished / "out" / "work" / "embeddings" / "shard_00003.esm.parquet"
    ).read_bytes()
    for name in OUTPUTS:
        if name != RUN_JSON:
            assert (outdir / name).read_bytes() == (finished / "out" / name).read_bytes(), name


def test_scores_follow_the_bytes_of_their_embedding_files(tmp_path):
    prepared = prepared_example(EXAMPLE, tmp_path / "prepared")
    embeddings = write_random_embeddings(prepared, tmp_path / "embeddings")
    random_classifier(tmp_path / "classifier")
    first = predict_files(embeddings[:2], tmp_path / "classifier", tmp_path / "scores", quiet=True)[0]
    stamp = first.stat().st_mtime_ns
    # Other vectors under the same ids and the same metadata: the scores must be recomputed.
    table = read_embeddings(embeddings[0])
    write_embeddings(embeddings[0], table.ids, table.vectors[::-1].copy(), table.metadata)
    again = predict_files(embeddings[:2], tmp_path / "classifier", tmp_path / "scores", quiet=True)[0]
    assert again.stat().st_mtime_ns != stamp
    from virnucpro.files.score_files import read_scores

    metadata = read_scores(again).metadata
    import hashlib

    assert metadata["dnabert_sha256"] == hashlib.sha256(embeddings[0].read_bytes()).hexdigest()


def test_is_complete_reads_the_footer_and_verify_reads_the_pages(tmp_path):
    """The footer check (no rows read: a real-width shard pair is 134 MB) finds a truncated file, a
    wrong row count or provenance, and column chunks that lie beyond the file's end; a damaged page
    behind an intact footer is found by `verify_pages` (score files) or when the file is read."""
    path = tmp_path / "shard_00001.dnabert.parquet"
    write_embeddings(path, ["a", "b"], np.ones((2, 64), dtype=np.float32), {"model": "m"})
    whole = path.read_bytes()
    assert is_complete(path, {"model": "m"}, 2) and is_complete(path, {"model": "m"}, 2, verify_pages=True)
    assert not is_complete(path, {"model": "other"}, 2) and not is_complete(path, {"model": "m"}, 3)
    assert not is_complete(path, {"model": "m", "dtype": "float16"}, 2)
    path.write_bytes(whole[:-9])
    assert not is_complete(path, {"model": "m"}, 2)
    # The data cut out of the middle, the footer kept: its chunk offsets point past the end.
    path.write_bytes(whole[:4] + whole[len(whole) // 2 :])
    assert not is_complete(path, {"model": "m"}, 2)
    path.write_bytes(whole)
    damage_a_data_page(path)
    assert is_complete(path, {"model": "m"}, 2)
    assert not is_complete(path, {"model": "m"}, 2, verify_pages=True)
    with pytest.raises(OSError, match="CRC"):
        read_embeddings(path)
    # A value of the footer's metadata damaged: its own checksum no longer matches.
    path.write_bytes(whole.replace(b"virnucpro.model\x18\x01m", b"virnucpro.model\x18\x01n"))
    assert path.read_bytes() != whole and not is_complete(path, {}, 2)


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--precision", "fp8"], "--precision fp8"),
        (["--devices", "cuda:7"], "--devices cuda:7"),
        (["--devices", "tpu"], "--devices tpu"),
    ],
)
def test_devices_and_precision_are_checked_before_anything_is_written(tmp_path, test_models, extra, option):
    outdir = tmp_path / "out"
    refused(run_cli(*run_args(test_models, EXAMPLE, outdir, *extra)), option)
    assert not outdir.exists()


@pytest.mark.slow
def test_a_refused_precision_does_not_block_the_corrected_rerun(test_models, finished, tmp_path):
    reads, outdir = copy_of(finished, tmp_path)
    before = snapshot(outdir)
    refused(run_cli(*run_args(test_models, reads, outdir, "--precision", "fp8")), "--precision fp8")
    assert snapshot(outdir) == before
    result = run_cli(*run_args(test_models, reads, outdir))
    assert result.returncode == 0, result.stderr


# --- Faults: one line, and never a half-finished result ---


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Synthetic scores for the example, and the outputs of an uninterrupted report on them."""
    folder = tmp_path_factory.mktemp("scored")
    prepared = prepared_example(EXAMPLE, folder / "prepared")
    embeddings = write_random_embeddings(prepared, folder / "embeddings")
    random_classifier(folder / "classifier")
    predict_files(embeddings, folder / "classifier", folder / "scores", quiet=True)
    args = ["report", "--input", EXAMPLE, "--prepared", prepared, "--scores", folder / "scores"]
    result = run_cli(*args, "--outdir", folder / "reference")
    assert result.returncode == 0, result.stderr
    return args, folder / "reference"


def assert_failed_report_left_only_whole_files(outdir: Path, reference: Path) -> None:
    assert not (outdir / RUN_JSON).exists()
    names = {p.name for p in outdir.iterdir()}
    assert names <= {*OUTPUTS, OUTDIR_MARKER}
    for name in names - {OUTDIR_MARKER}:
        assert (outdir / name).read_bytes() == (reference / name).read_bytes(), name
    assert not [p for p in outdir.iterdir() if p.name.startswith(".tmp-")]


@contextlib.contextmanager
def tmpfs(mount: Path, options: str):
    """A small tmpfs mounted at `mount` (root only): a real full disk or read-only folder."""
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.skipif(not IS_ROOT, reason="mounting a small file system needs root")
def test_disk_full_is_one_line_and_leaves_only_whole_files(scored, tmp_path):
    args, reference = scored
    with tmpfs(tmp_path / "small", "size=96k") as mount:
        outdir = mount / "out"
        line = refused(run_cli(*args, "--outdir", outdir), "No space left on device", "cannot write")
        assert str(outdir) in line
        assert_failed_report_left_only_whole_files(outdir, reference)
        # Space freed (the figures removed by hand): the same command finishes.
        for png in outdir.glob("*.png"):
            png.unlink()
        subprocess.run(["mount", "-o", "remount,size=400k", str(mount)], check=True)
        result = run_cli(*args, "--outdir", outdir)
        assert result.returncode == 0, result.stderr
        assert {p.name for p in outdir.iterdir()} == {*OUTPUTS, OUTDIR_MARKER}


@pytest.mark.skipif(not IS_ROOT, reason="mounting a small file system needs root")
def test_disk_full_during_prepare_is_one_line_and_leaves_nothing(tmp_path):
    reads = tmp_path / "reads.fa"
    reads.write_text("".join(f">r{i}\n{'ATGAAACCCGGGTTT' * 30}\n" for i in range(2000)))
    with tmpfs(tmp_path / "small", "size=64k") as mount:
        outdir = mount / "prepared"
        refused(run_cli("prepare", reads, "--outdir", outdir), f"cannot write {outdir}", "No space left")
        assert not outdir.exists()  # the folder it made goes too


def run_cli_html_too_large(args: list, reference: Path) -> subprocess.CompletedProcess:
    """The CLI under a file-size limit (RLIMIT_FSIZE, ulimit -f) between the largest other output
    of `reference` and report.html (it embeds both figures): every other file can be written whole
    and report.html cannot."""
    others = max(
        p.stat().st_size for p in reference.iterdir() if p.name not in ("report.html", OUTDIR_MARKER)
    )
    html = (reference / "report.html").stat().st_size
    assert others < html
    size_limit = (others + html) // 2

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_limit, size_limit))

    return subprocess.run(
        [sys.executable, "-m", "virnucpro", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(),
        preexec_fn=limit,
    )


def test_a_file_size_limit_is_one_line_and_leaves_only_whole_files(scored, tmp_path):
    """RLIMIT_FSIZE makes writes fail for real (EFBIG), root or not: report.html is the one refused."""
    args, reference = scored
    outdir = tmp_path / "out"
    refused(
        run_cli_html_too_large([*args, "--outdir", outdir], reference),
        os.strerror(errno.EFBIG),
        "report.html",
    )
    assert_failed_report_left_only_whole_files(outdir, reference)


@pytest.mark.skipif(not IS_ROOT, reason="mounting a read-only file system needs root")
def test_a_read_only_output_folder_is_one_line(scored, tmp_path):
    args, _ = scored
    with tmpfs(tmp_path / "ro", "ro,size=64k") as mount:
        for outdir in (mount, mount / "sub"):
            refused(run_cli(*args, "--outdir", outdir), str(outdir), "Read-only file system")


def test_a_rerun_removes_run_json_before_rewriting_the_other_outputs(scored, tmp_path):
    """run.json marks a finished folder: a rerun that fails while it writes leaves none."""
    args, reference = scored
    outdir = tmp_path / "out"
    shutil.copytree(reference, outdir)
    refused(run_cli_html_too_large([*args, "--outdir", outdir], reference), "report.html")
    assert not (outdir / RUN_JSON).exists()
    assert_failed_report_left_only_whole_files(outdir, reference)


def test_a_report_refused_for_its_inputs_touches_no_earlier_output(scored, tmp_path):
    """Everything report reads (scores, prepare folder, inputs) is checked before an earlier output
    goes: a wrong, missing or misordered input into a finished folder is refused and every file
    stays as it was."""
    args, _ = scored
    outdir = tmp_path / "out"
    assert run_cli(*args, "--outdir", outdir).returncode == 0
    before = snapshot(outdir)
    prepared = Path(args[args.index("--prepared") + 1])
    other = tmp_path / "other.fa"
    other.write_text(EXAMPLE.read_text().replace("ACGT", "ACGA", 1))
    cases = [
        ([*args[:-1], tmp_path / "no-such-scores.parquet"], "no-such-scores.parquet"),
        ([*args[:2], other, *args[3:]], f"{other}: is not the input the prepare folder was made from"),
        ([*args[:3], "--input", other, *args[3:]], "2 input file(s), but"),
        ([*args[:4], tmp_path / "nothing", *args[5:]], "not a finished prepare folder"),
    ]
    for arguments, message in cases:
        refused(run_cli(*arguments, "--outdir", outdir), message)
        assert snapshot(outdir) == before, message
    assert prepared.is_dir()


def test_a_classifier_for_another_chunk_size_is_refused(test_models, scored, tmp_path):
    """A classifier knows the chunk length it was trained on (a published file's name, or the
    config.json that convert-classifier and train write): run refuses another --chunk-size before
    any work, and report refuses scores of such a classifier on chunks of another length."""
    import torch

    from virnucpro.method.classifier import load_classifier_folder

    model, _ = load_classifier_folder(test_models / "classifier")
    published = tmp_path / "300_model.pth"
    torch.save(model.state_dict(), published)
    message = "a classifier for 300 bp chunks, but the chunks are 500 bp"
    refused(run_cli(*run_args(test_models, EXAMPLE, tmp_path / "out"), "--classifier", published), message)
    assert not (tmp_path / "out").exists()
    converted = tmp_path / "classifier-300"
    assert run_cli("convert-classifier", published, converted).returncode == 0
    assert json.loads((converted / "config.json").read_text())["chunk_size"] == 300
    refused(run_cli(*run_args(test_models, EXAMPLE, tmp_path / "out"), "--classifier", converted), message)

    args, _ = scored
    prepared = Path(args[args.index("--prepared") + 1])
    random_classifier(tmp_path / "random-300")
    config = json.loads((tmp_path / "random-300" / "config.json").read_text())
    (tmp_path / "random-300" / "config.json").write_text(json.dumps({**config, "chunk_size": 300}))
    predict_files(
        sorted((prepared.parent / "embeddings").glob("*.parquet")),
        tmp_path / "random-300",
        tmp_path / "scores-300",
        quiet=True,
    )
    outdir = tmp_path / "report"
    result = run_cli(*args[:-1], tmp_path / "scores-300", "--outdir", outdir)
    refused(result, "a classifier for 300 bp chunks", "holds 500 bp chunks")
    assert not (outdir / RUN_JSON).exists()


# --- Hostile weights ---


def zip_bomb(path: Path, declared: int) -> Path:
    """A torch-like zip whose data.pkl inflates from a few MB to `declared` bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("bomb/data.pkl", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 24)
            for _ in range(declared // len(block)):
                member.write(block)
        archive.writestr("bomb/version", "3\n")
    return path


def test_a_zip_bomb_classifier_is_refused_before_it_is_inflated(tmp_path):
    bomb = zip_bomb(tmp_path / "bomb.pth", 1_500_000_000)
    assert bomb.stat().st_size < 10_000_000
    # Linux carries a process's RSS high-water mark across fork and exec, so a child of this (large)
    # test process would report this process's peak: a small intermediate process starts the CLI
    # and reports its child's peak (ru_maxrss, KiB) on stdout.
    measure = (
        "import resource, subprocess, sys;"
        "code = subprocess.run(sys.argv[1:]).returncode;"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "sys.exit(code)"
    )
    command = ["-m", "virnucpro", "convert-classifier", str(bomb), str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, *command],
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    refused(result, str(bomb), "zip bomb")
    # The process stayed near what importing torch costs.
    peak_kib = int(result.stdout)
    assert peak_kib < 1_200_000, peak_kib


def test_oversized_or_legacy_weights_are_refused(tmp_path):
    import torch

    from virnucpro.method.classifier import read_pth_classifier
    from virnucpro.models.dnabert_s import load_state_dict

    big = tmp_path / "big.pth"
    torch.save({"hidden_layer.weight": torch.zeros(10_000, 2_000)}, big)  # 80 MB, stored plainly
    with pytest.raises(InputError, match=r"more than .* for a VirNucPro classifier"):
        read_pth_classifier(big)
    legacy = tmp_path / "legacy.pth"
    torch.save({"x": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match="not a zip-format PyTorch file"):
        read_pth_classifier(legacy)
    bomb = zip_bomb(tmp_path / "pytorch_model.bin", 200_000_000)
    with pytest.raises(InputError, match="zip bomb"):
        load_state_dict(bomb)
    plain = tmp_path / "plain" / "pytorch_model.bin"
    plain.parent.mkdir()
    torch.save({"bert.embeddings.word_embeddings.weight": torch.ones(4, 2)}, plain)
    assert load_state_dict(plain)["embeddings.word_embeddings.weight"].shape == (4, 2)


# --- One sample in several files, ids of any characters, end to end ---


@pytest.mark.slow
def test_several_files_with_non_ascii_ids_run_end_to_end(test_models, tmp_path):
    text = EXAMPLE.read_text()
    split = text.index(">read_3")
    (tmp_path / "a.fa").write_text(text[:split].replace(">phage_like_contig_1", ">séquence_αβ|1"))
    (tmp_path / "b.fa").write_text(text[split:])
    outdir = tmp_path / "out"
    result = run_cli(*run_args(test_models, [tmp_path / "a.fa", tmp_path / "b.fa"], outdir))
    assert result.returncode == 0, result.stderr
    rows = (outdir / "sequences.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[1].startswith("séquence_αβ|1\t") and len(rows) == 13
    assert "séquence_αβ|1_chunk_2R2\t" in (outdir / "prediction_results.txt").read_text(encoding="utf-8")
    run = json.loads((outdir / RUN_JSON).read_text())
    assert [Path(entry["path"]).name for entry in run["inputs"]] == ["a.fa", "b.fa"]
    # report alone, given the same files in the same order, writes the same viral.fa.
    again = run_cli(
        "report", "--input", tmp_path / "a.fa", "--input", tmp_path / "b.fa",
        "--prepared", RunLayout(outdir).prepare.folder, "--scores", RunLayout(outdir).scores,
        "--outdir", tmp_path / "report",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "report" / "viral.fa").read_bytes() == (outdir / "viral.fa").read_bytes()
    swapped = run_cli(
        "report", "--input", tmp_path / "b.fa", "--input", tmp_path / "a.fa",
        "--prepared", RunLayout(outdir).prepare.folder, "--scores", RunLayout(outdir).scores,
        "--outdir", tmp_path / "swapped",
    )  # fmt: skip
    refused(swapped, "is not the input the prepare folder was made from")


@pytest.mark.gpu
def test_fp8_is_accepted_exactly_on_gpus_that_run_it():
    import torch

    from virnucpro.defaults import FP8_MIN_COMPUTE_CAPABILITY
    from virnucpro.stages.run import check_execution

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible")
    capable = torch.cuda.get_device_capability(0) >= FP8_MIN_COMPUTE_CAPABILITY
    if capable:
        assert check_execution("cuda:0", 1, "fp8") == ["cuda:0"]
    else:
        with pytest.raises(InputError, match="--precision fp8 needs a CUDA GPU of compute capability"):
            check_execution("cuda:0", 1, "fp8")
    with pytest.raises(InputError, match="--precision fp8"):
        check_execution("cpu", 1, "fp8")


# ---------------------------------------------------------------------------------------------
# refused input found while prepare reads it, and model folders checked before any work


def test_a_record_refused_during_prepare_leaves_no_folder_it_made(test_models, tmp_path):
    """A bad record deep in the file is found while prepare reads it, after the folder was made:
    the folder made by this run goes again; in a folder that existed, the user's files stay."""
    reads = tmp_path / "reads.fa"
    shutil.copy(EXAMPLE, reads)
    with open(reads, "a") as out:
        out.write(">late\nACGTACGT1ACGT\n")
    result = run_cli(*run_args(test_models, reads, tmp_path / "new"))
    refused(result, "reads.fa: record", "(late)", "unexpected character '1'")
    assert result.returncode == 2
    assert not (tmp_path / "new").exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine\n")
    refused(run_cli(*run_args(test_models, reads, existing)), "(late)")
    assert (existing / "notes.txt").read_text() == "mine\n"
    assert not (existing / RUN_JSON).exists()

    refused(run_cli("prepare", reads, "--outdir", tmp_path / "prepared"), "(late)")
    assert not (tmp_path / "prepared").exists()


def test_an_id_too_long_for_the_tables_is_one_line(test_models, tmp_path):
    reads = tmp_path / "long-id.fa"
    reads.write_text(">" + "x" * 2_000_000 + " description\n" + "ACGT" * 200 + "\n")
    line = refused(run_cli(*run_args(test_models, reads, tmp_path / "out")), "long-id.fa: record 1")
    assert "id of 2,000,000 characters (at most 65,536)" in line and len(line) < 300
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("which", ["empty folder", "a file of the model"])
def test_a_model_that_is_no_model_folder_is_refused_before_any_work(test_models, tmp_path, which):
    """Refused up front even for an input without frames to embed (the models would never load)."""
    reads = tmp_path / "no-frames.fa"
    reads.write_text(">stops\n" + "TAAC" * 150 + "\n")  # a stop codon in every frame of both strands
    if which == "empty folder":
        model = tmp_path / "dnabert-s"
        model.mkdir()
        expected = f"{model}: no config.json (a DNABERT-S model folder)"
    else:
        model = test_models / "dnabert-s" / "config.json"
        expected = f"{model}: a file, not a model folder"
    args = run_args(test_models, reads, tmp_path / "out")
    args[args.index("--dnabert-model") + 1] = model
    refused(run_cli(*args), expected)
    assert not (tmp_path / "out").exists()


def test_refused_stage_commands_leave_no_folder_they_made(test_models, tmp_path):
    """embed-dna, embed, predict and report refused for bad inputs: one line naming the file, and
    the output folder each had made is gone again (with the marker report writes into it)."""
    garbage = tmp_path / "shard_00001.dnabert.parquet"
    garbage.write_text("not parquet\n")
    esm = tmp_path / "shard_00001.esm.parquet"
    esm.write_text("not parquet either\n")
    reads = tmp_path / "reads.fa"
    shutil.copy(EXAMPLE, reads)
    commands = {
        "embed-dna": (
            ["embed-dna", reads, "--model", test_models / "dnabert-s"],
            f"{reads}: not a shard file",
        ),
        "embed": (
            [
                "embed",
                reads,
                "--dnabert-model",
                test_models / "dnabert-s",
                "--esm-model",
                test_models / "esm2",
            ],
            f"{reads}: not a shard file",
        ),
        "predict": (
            ["predict", garbage, esm, "--classifier", test_models / "classifier"],
            f"{garbage}: not a readable embedding file",
        ),
        "report": (
            ["report", "--input", reads, "--prepared", tmp_path / "nothing", "--scores", garbage],
            f"{tmp_path / 'nothing'}: not a finished prepare folder",
        ),
    }
    for name, (args, expected) in commands.items():
        outdir = tmp_path / f"out-{name}"
        line = refused(run_cli(*args, "--outdir", outdir), expected)
        assert " or " not in line.split(": not")[0], line  # the one file, not a pair
        assert not outdir.exists(), name
