"""`virnucpro embed`: both models in each worker, files byte-identical to embed-dna + embed-protein
for any --workers; resume ignores batch settings; bf16 on CPU agrees with fp32; one-line failures
(unpaired shards, fp8 without a Hopper GPU, a write that fails)."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_env, run_cli
from virnucpro.embedding.agreement import label_agreement, min_cosine
from virnucpro.embedding.engine import embed_sequences, load_embedder
from virnucpro.errors import output_error
from virnucpro.files.embedding_files import read_embeddings, read_metadata
from virnucpro.files.shards import read_shard
from virnucpro.models.classifier_weights import load_classifier


@pytest.fixture(scope="module")
def prepared(example_fasta_module, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prepared")
    run_cli("prepare", example_fasta_module, "--outdir", folder, "--shard-size", "8", "-q", check=True)
    shards = folder / "shards"
    return sorted(shards.glob("*.nucleotide.fa")), sorted(shards.glob("*.protein.faa"))


@pytest.fixture(scope="module")
def example_fasta_module():
    from conftest import DATA

    return DATA / "example.fa"


def file_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def models_args(test_models):
    return ["--dnabert-model", test_models / "dnabert-s", "--esm-model", test_models / "esm2"]


@pytest.mark.slow
def test_embed_equals_the_two_separate_commands_for_any_workers(prepared, test_models, tmp_path):
    nucleotide, protein = prepared
    separate = tmp_path / "separate"
    common = ["--devices", "cpu", "--workers", "1", "-q"]
    run_cli(
        "embed-dna",
        *nucleotide,
        "--outdir",
        separate,
        "--model",
        test_models / "dnabert-s",
        *common,
        check=True,
    )
    run_cli(
        "embed-protein", *protein, "--outdir", separate, "--model", test_models / "esm2", *common, check=True
    )
    combined = tmp_path / "combined"
    result = run_cli(
        "embed", *protein, *nucleotide, "--outdir", combined, *models_args(test_models),
        "--devices", "cpu", "--workers", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Both models are loaded once per worker, not once per file.
    assert result.stderr.count(": loaded ") == 4
    assert len(file_bytes(combined)) == 2 * len(nucleotide)
    assert file_bytes(combined) == file_bytes(separate)
    meta = read_metadata(combined / "shard_00001.dnabert.parquet")
    assert (
        meta["batch_size"] == "256" and meta["precision"] == "fp32" and meta["attention"].startswith("sdpa")
    )
    assert read_metadata(combined / "shard_00001.esm.parquet")["tokens_per_batch"] == "16384"
    for path in nucleotide:
        assert (
            read_embeddings(combined / path.name.replace(".nucleotide.fa", ".dnabert.parquet")).ids
            == (read_shard(path)[0])
        )

    # Resume compares model, revision, precision and pooling, never the batch settings.
    again = run_cli(
        "embed", *nucleotide, *protein, "--outdir", combined, *models_args(test_models), "--devices", "cpu",
        "--dnabert-batch-size", "3", "--esm-tokens-per-batch", "500",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "embedded" not in again.stderr and "worker" not in again.stderr  # no worker, no model loaded
    assert f"{len(nucleotide)} of {len(nucleotide)} shard(s) complete, kept" in again.stderr
    assert file_bytes(combined) == file_bytes(separate)


def test_unpaired_shards_and_fp8_on_cpu_are_refused_up_front(prepared, test_models, tmp_path):
    nucleotide, protein = prepared
    result = run_cli("embed", *nucleotide, *protein[1:], "--outdir", tmp_path, *models_args(test_models))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{nucleotide[0]}: its shard's .protein.faa file is not among the inputs" in result.stderr
    result = run_cli(
        "embed", *nucleotide, *protein, "--outdir", tmp_path, *models_args(test_models),
        "--devices", "cpu", "--precision", "fp8",
    )  # fmt: skip
    assert result.returncode == 2 and "worker" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "virnucpro: error: --precision fp8 needs a GPU of compute capability 9.0 or newer (Hopper); "
        "this run would embed on the CPU (use fp32 or bf16)"
    )


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead


@pytest.mark.slow
def test_a_failed_write_is_one_line_naming_the_file(test_models, tmp_path):
    shard = tmp_path / "shard_00001.nucleotide.fa"
    shard.write_text("".join(f">s{i}_chunk_1F1\n{'ACGTTGCA' * 20}\n" for i in range(100)))  # ~20 kB out
    outdir = tmp_path / "out"
    command = [sys.executable, "-m", "virnucpro", "embed-dna", str(shard), "--outdir", str(outdir)]
    command += ["--model", str(test_models / "dnabert-s"), "--devices", "cpu"]
    result = subprocess.run(
        command, capture_output=True, text=True, env=cli_env(), preexec_fn=limit_file_size
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert (
        f"cannot write {outdir / 'shard_00001.dnabert.parquet'}: File too large (raise the file-size" in last
    )
    assert not list(outdir.glob("*.parquet")) and not list(outdir.glob(".tmp*"))


def test_a_full_disk_in_pyarrow_words_says_so():
    """pyarrow's OSErrors carry the error number only in their text; the line still says what it is."""
    error = OSError("IOError: error writing bytes to file. Detail: [errno 28] No space left on device")
    assert str(output_error(Path("out/shard_00002.esm.parquet"), error)) == (
        "cannot write out/shard_00002.esm.parquet: No space left on device "
        "(free space or choose another --outdir, then rerun to resume)"
    )


@pytest.mark.slow
def test_bf16_on_cpu_agrees_with_fp32_over_every_frame_of_the_example(prepared, test_models, capsys):
    """Mixed bf16 really computes in bf16 on the CPU (the vectors differ) and stays within a cosine
    of 0.999 of fp32 for every frame of the bundled example; the label agreement is reported."""
    nucleotide, protein = prepared
    dna = [s for path in nucleotide for s in read_shard(path)[1]]
    proteins = [s for path in protein for s in read_shard(path)[1]]
    vectors = {}
    for precision in ("fp32", "bf16"):
        vectors[precision] = (
            embed_sequences(load_embedder("dnabert", test_models / "dnabert-s", precision=precision), dna),
            embed_sequences(load_embedder("esm", test_models / "esm2", precision=precision), proteins),
        )
    classifier = load_classifier(test_models / "classifier").model
    agreement = label_agreement(classifier, vectors["fp32"], vectors["bf16"])
    with capsys.disabled():
        print(
            f"\nbf16 vs fp32 on CPU, {len(dna)} frames: min cosine DNABERT-S "
            f"{min_cosine(vectors['fp32'][0], vectors['bf16'][0]):.6f}, ESM-2 "
            f"{min_cosine(vectors['fp32'][1], vectors['bf16'][1]):.6f}, label agreement {agreement:.3f}"
        )
    for model in (0, 1):
        assert not np.array_equal(vectors["fp32"][model], vectors["bf16"][model])
        assert min_cosine(vectors["fp32"][model], vectors["bf16"][model]) >= 0.999
    assert agreement >= 0.9


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is usable here")
def test_cuda_requested_without_a_usable_gpu_names_the_likely_cause(prepared, test_models, tmp_path):
    import glob

    nucleotide, protein = prepared
    command = [sys.executable, "-m", "virnucpro", "embed", *map(str, [*nucleotide, *protein])]
    command += ["--outdir", str(tmp_path), "--devices", "cuda"]
    command += [str(a) for a in models_args(test_models)]
    hidden = subprocess.run(
        command, capture_output=True, text=True, env={**cli_env(), "CUDA_VISIBLE_DEVICES": ""}
    )
    assert hidden.returncode == 2 and "Traceback" not in hidden.stderr
    assert hidden.stderr.strip().splitlines()[-1] == (
        "virnucpro: error: --devices cuda: no usable CUDA device: CUDA_VISIBLE_DEVICES is '', "
        "which hides every GPU from this process"
    )
    environment = {k: v for k, v in cli_env().items() if k != "CUDA_VISIBLE_DEVICES"}
    plain = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1
    if not glob.glob("/dev/nvidia[0-9]*"):
        assert "no /dev/nvidia* device nodes" in plain.stderr
