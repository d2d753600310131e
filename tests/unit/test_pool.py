"""The worker pool's invariants, through the real command: 1:1 files in shard order, deterministic
assignment, resume, workers 1 vs 2 byte-identical, and failing workers (exception, SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_env, run_cli
from virnucpro.embedding.devices import resolve_devices
from virnucpro.embedding.engine import embed_sequences, load_embedder
from virnucpro.embedding.options import EmbeddingOptions
from virnucpro.embedding.pool import assign_round_robin, embed_files
from virnucpro.errors import InputError
from virnucpro.files.embedding_files import read_embeddings
from virnucpro.files.layout import OUTDIR_MARKER
from virnucpro.files.shards import read_shard, shard_name


def write_shards(folder: Path, sizes: list[int], seed: int) -> list[Path]:
    """Nucleotide shards of random frame-like DNA (50..501 bp), ids in a known order."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, size in enumerate(sizes, start=1):
        path = folder / f"{shard_name(number)}.nucleotide.fa"
        with open(path, "w") as handle:
            for i in range(size):
                dna = "".join(rng.choice("ACGT") for _ in range(rng.randint(50, 501)))
                handle.write(f">seq{number}_{i}_chunk_1F1\n{dna}\n")
        paths.append(path)
    return paths


def embed_dna(shards, outdir, model, *extra):
    return run_cli("embed-dna", *shards, "--outdir", outdir, "--model", model, "--devices", "cpu", *extra)


def lines(stderr: str, word: str) -> list[str]:
    return re.findall(rf"worker \d+: {word} (shard_\d+)", stderr)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), [40, 25, 33, 18, 1], seed=11)


@pytest.fixture(scope="module")
def reference(shards, test_models, tmp_path_factory):
    """One uninterrupted run with one worker: what every other run must reproduce."""
    outdir = tmp_path_factory.mktemp("reference")
    result = embed_dna(shards, outdir, test_models / "dnabert-s", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(lines(result.stderr, "embedded")) == [f"shard_0000{i}" for i in range(1, 6)]
    assert len(re.findall(r"worker \d+: loaded ", result.stderr)) == 1
    return outdir


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def test_assignment_is_round_robin_by_name_and_deterministic():
    files = [Path(f"in/shard_{n:05d}.nucleotide.fa") for n in (3, 1, 5, 2, 4)]
    plan = assign_round_robin(files, 2)
    assert [[p.name[:11] for p in w] for w in plan] == [
        ["shard_00001", "shard_00003", "shard_00005"],
        ["shard_00002", "shard_00004"],
    ]
    shuffled = files[:]
    random.Random(0).shuffle(shuffled)
    assert assign_round_robin(shuffled, 2) == plan
    assert assign_round_robin(files, 3) == assign_round_robin(list(reversed(files)), 3)


def test_device_specs():
    assert resolve_devices("cpu", 3) == ["cpu", "cpu", "cpu"]
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(InputError, match="--devices"):
            resolve_devices(bad, 1)
    with pytest.raises(InputError, match="--workers"):
        resolve_devices("cpu", 0)


@pytest.mark.slow
def test_outputs_correspond_to_inputs_in_shard_order(shards, test_models, tmp_path):
    order = [shards[3], shards[0], shards[4], shards[2], shards[1]]  # processing order differs
    outputs = embed_files(
        "dnabert",
        order,
        tmp_path,
        EmbeddingOptions(dnabert_model=str(test_models / "dnabert-s"), devices="cpu", workers=2),
        quiet=True,
    )
    assert [p.name.split(".")[0] for p in outputs] == [p.name.split(".")[0] for p in order]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([OUTDIR_MARKER, *(p.name for p in outputs)])
    embedder = load_embedder("dnabert", test_models / "dnabert-s")
    for shard, output in zip(order, outputs, strict=True):
        ids, sequences = read_shard(shard)
        table = read_embeddings(output)
        assert table.ids == ids
        assert table.metadata["model"] == str(test_models / "dnabert-s")
        assert table.metadata["revision"].startswith("local:sha256=")
        assert table.metadata["precision"] == "fp32"
        np.testing.assert_allclose(table.vectors, embed_sequences(embedder, sequences), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_workers_give_byte_identical_files(shards, reference, test_models, tmp_path):
    result = embed_dna(shards, tmp_path, test_models / "dnabert-s", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"worker \d+: loaded ", result.stderr)) == 2  # once per worker
    assert re.search(r"worker 1 started .*: shard_00001, shard_00003, shard_00005", result.stderr)
    assert re.search(r"worker 2 started .*: shard_00002, shard_00004", result.stderr)
    assert file_bytes(tmp_path) == file_bytes(reference)


@pytest.mark.slow
def test_resume_recomputes_exactly_the_missing_and_broken_files(shards, reference, test_models, tmp_path):
    outdir = tmp_path / "out"
    shutil.copytree(reference, outdir)
    (outdir / "shard_00002.dnabert.parquet").unlink()
    broken = outdir / "shard_00004.dnabert.parquet"
    broken.write_bytes(broken.read_bytes()[:200])
    # A file that no longer matches what the command wrote is not replaced (it cannot be told from
    # a user's): the command names it and touches nothing; removed, it is recomputed.
    refused = embed_dna(shards, outdir, test_models / "dnabert-s", "--workers", "2")
    assert refused.returncode == 2 and f"{broken}: was changed since virnucpro wrote it" in refused.stderr
    assert not (outdir / "shard_00002.dnabert.parquet").exists() and len(broken.read_bytes()) == 200
    broken.unlink()
    result = embed_dna(shards, outdir, test_models / "dnabert-s", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert sorted(lines(result.stderr, "embedded")) == ["shard_00002", "shard_00004"]
    # Complete shards are left out before any worker starts.
    assert "3 of 5 shard(s) complete, kept: shard_00001, shard_00003, shard_00005" in result.stderr
    assert file_bytes(outdir) == file_bytes(reference)
    # Another precision is another result: nothing is reused, nothing is mixed.
    again = embed_dna(shards, outdir, test_models / "dnabert-s", "--precision", "bf16")
    assert again.returncode == 0, again.stderr
    assert len(lines(again.stderr, "embedded")) == 5
    assert {read_embeddings(p).metadata["precision"] for p in outdir.glob("*.parquet")} == {"bf16"}


@pytest.mark.slow
def test_a_worker_that_raises_fails_the_command_and_keeps_finished_files(shards, test_models, tmp_path):
    bad = tmp_path / "in" / "shard_00007.nucleotide.fa"
    bad.parent.mkdir()
    bad.write_bytes(b">x_chunk_1F1\nACGT\xff\xfeACGT\n")
    result = embed_dna([*shards[:2], bad], tmp_path / "out", test_models / "dnabert-s", "--workers", "2")
    assert result.returncode == 2  # bad input, named with its file, in one line
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("virnucpro: error: worker ")
    assert "shard_00007.nucleotide.fa: not a shard file (not UTF-8 text: byte 0xff at offset 17)" in message
    assert "Traceback" not in result.stderr
    assert (tmp_path / "out" / "shard_00001.dnabert.parquet").is_file()
    assert not list((tmp_path / "out").glob(".tmp-*"))


@pytest.mark.slow
def test_sigkill_of_a_worker_fails_the_run_and_a_rerun_completes(test_models, tmp_path):
    shards = write_shards(tmp_path / "in", [100, 400, 100, 400], seed=12)
    outdir = tmp_path / "out"
    args = ["embed-dna", *shards, "--outdir", outdir, "--model", test_models / "dnabert-s"]
    command = [sys.executable, "-m", "virnucpro", *map(str, args), "--devices", "cpu", "--workers", "2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=cli_env())
    seen, victim = [], None
    for line in process.stderr:
        seen.append(line)
        started = re.search(r"worker 2 started \(pid (\d+)", line)
        if started:
            victim = int(started.group(1))
        if victim and "worker 2: loaded" in line:
            os.kill(victim, signal.SIGKILL)  # mid-run: its first file (400 sequences) has just begun
    assert process.wait(timeout=300) == 1
    message = "".join(seen).strip().splitlines()[-1]
    assert "worker 2 (cpu) was killed by SIGKILL while embedding" in message, message
    assert "shard_00002.nucleotide.fa" in message
    assert not (outdir / "shard_00002.dnabert.parquet").exists()

    rerun = run_cli(*args, "--devices", "cpu", "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert "shard_00002" in lines(rerun.stderr, "embedded")
    fresh = tmp_path / "fresh"
    run_cli(
        *args[:-4], "--outdir", fresh, "--model", test_models / "dnabert-s", "--devices", "cpu", check=True
    )
    assert file_bytes(outdir) == file_bytes(fresh)


@pytest.mark.slow
@pytest.mark.biopython
def test_embed_protein_on_prepared_shards(test_models, example_fasta, tmp_path):
    run_cli("prepare", example_fasta, "--outdir", tmp_path / "prep", "--shard-size", "8", "-q", check=True)
    proteins = sorted((tmp_path / "prep" / "shards").glob("*.protein.faa"))
    result = run_cli(
        "embed-protein", *proteins, "--outdir", tmp_path / "emb", "--model", test_models / "esm2",
        "--devices", "cpu", "--workers", "2", "--tokens-per-batch", "300",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tables = [read_embeddings(tmp_path / "emb" / f"{p.name.split('.')[0]}.esm.parquet") for p in proteins]
    assert [t.ids for t in tables] == [read_shard(p)[0] for p in proteins]
    assert sum(len(t.ids) for t in tables) == 30 and tables[0].dim == 40
    assert tables[0].metadata["pooling"] == "mean over residue positions 1..min(len,1024)"


def test_bad_arguments_are_one_line_errors(shards, tmp_path):
    wrong_name = tmp_path / "frames.fa"
    wrong_name.write_text(">a\nACGT\n")
    result = embed_dna([wrong_name], tmp_path / "out", "/nonexistent/model")
    assert result.returncode == 2 and "not a shard file" in result.stderr
    result = embed_dna([shards[0]], tmp_path / "out", "nobody/no-such-model")
    assert result.returncode == 1
    assert "HF_HUB_OFFLINE=1" in result.stderr and "download-models" in result.stderr
    assert "Traceback" not in result.stderr
    result = embed_dna([shards[0]], tmp_path / "out", tmp_path, "--precision", "fp9")
    assert result.returncode == 2 and "'fp9' is not one of fp32, bf16, fp16, fp8" in result.stderr
    result = embed_dna([shards[0]], tmp_path / "out", tmp_path)  # a folder, but not a model
    assert result.returncode == 2 and "no config.json (a DNABERT-S model folder)" in result.stderr
    assert "worker" not in result.stderr  # refused before any worker started


@pytest.mark.slow
def test_an_empty_shard_gives_an_empty_file(test_models, tmp_path):
    shards = write_shards(tmp_path / "in", [0, 3], seed=13)
    outputs = embed_files(
        "dnabert",
        shards,
        tmp_path / "out",
        EmbeddingOptions(dnabert_model=str(test_models / "dnabert-s"), devices="cpu"),
    )
    empty = read_embeddings(outputs[0])
    assert empty.ids == [] and empty.vectors.shape == (0, 48)
    assert read_embeddings(outputs[1]).ids == read_shard(shards[1])[0]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_gpu_pool_matches_cpu_and_records_tf32_off(shards, reference, test_models, tmp_path):
    outputs = embed_files(
        "dnabert",
        shards,
        tmp_path,
        EmbeddingOptions(dnabert_model=str(test_models / "dnabert-s"), devices="cuda"),
        quiet=True,
    )
    for output in outputs:
        table = read_embeddings(output)
        assert table.metadata["tf32"] == "off"
        expected = read_embeddings(reference / output.name)
        assert table.ids == expected.ids
        np.testing.assert_allclose(table.vectors, expected.vectors, rtol=1e-4, atol=1e-5)


def spawned_workers(pid: int) -> list[int]:
    """The pids of the spawned worker processes of `pid` (multiprocessing's spawn entry point)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = []
    for child in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def start_embedding(shards, test_models, outdir: Path) -> subprocess.Popen:
    """`embed-dna` with two workers in its own process group, stderr captured."""
    command = [sys.executable, "-m", "virnucpro", "embed-dna", *map(str, shards), "--outdir", str(outdir)]
    command += ["--model", str(test_models / "dnabert-s"), "--devices", "cpu", "--workers", "2"]
    return subprocess.Popen(command, env=cli_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_until(process: subprocess.Popen, moment: str, outdir: Path) -> list[int]:
    """Wait for "starting" (both workers exist, still importing torch) or "embedding" (a file is
    done); the workers' pids."""
    while process.poll() is None:
        workers = spawned_workers(process.pid)
        if len(workers) >= 2 and (moment == "starting" or any(outdir.glob("*.parquet"))):
            return workers
        time.sleep(0.01)  # leave the two cores to the workers being watched
    raise AssertionError(f"embed-dna ended before {moment}: {process.communicate()[1]}")


def assert_resumes_to_the_reference(shards, test_models, outdir: Path, reference: Path) -> None:
    again = embed_dna(shards, outdir, test_models / "dnabert-s", "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert not list(outdir.glob(".tmp-*"))
    assert file_bytes(outdir) == file_bytes(reference)


# Ctrl-C reaches the whole process group; `kill PID` or a scheduler's SIGTERM may reach the parent alone.
STOPS = {
    "ctrl-c": (lambda pid: os.killpg(pid, signal.SIGINT), 130, "virnucpro: interrupted"),
    "sigterm": (lambda pid: os.kill(pid, signal.SIGTERM), 143, "virnucpro: terminated by SIGTERM"),
    "sighup": (lambda pid: os.kill(pid, signal.SIGHUP), 129, "virnucpro: terminated by SIGHUP"),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["starting", "embedding"])
@pytest.mark.parametrize("stop", sorted(STOPS))
def test_a_stop_during_embedding_is_one_line_and_keeps_finished_files(
    shards, test_models, reference, tmp_path, moment, stop
):
    """The command ends with 128 + the signal's number and one line, its workers end with it, none
    prints a traceback, and a rerun resumes to the uninterrupted run's files."""
    send, code, last_line = STOPS[stop]
    outdir = tmp_path / "out"
    process = start_embedding(shards, test_models, outdir)
    workers = wait_until(process, moment, outdir)
    send(process.pid)
    _, stderr = process.communicate(timeout=120)  # EOF: the workers, which share stderr, ended too
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and "Logging error" not in stderr
    assert stderr.strip().splitlines()[-1] == last_line
    assert not list(outdir.glob(".tmp-*"))
    assert not [pid for pid in workers if Path(f"/proc/{pid}/cmdline").exists()]
    assert_resumes_to_the_reference(shards, test_models, outdir, reference)


@pytest.mark.slow
def test_workers_of_a_parent_killed_with_9_end_quietly(shards, test_models, reference, tmp_path):
    """kill -9 of the parent alone: its workers stop at their next message (nobody reads their
    results) without a traceback, and a rerun resumes."""
    outdir = tmp_path / "out"
    process = start_embedding(shards, test_models, outdir)
    wait_until(process, "embedding", outdir)
    os.kill(process.pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    assert_resumes_to_the_reference(shards, test_models, outdir, reference)
