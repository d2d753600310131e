"""The Nextflow pipeline run by the real engine: the runtime bootstrap, parameter checks, -stub-run,
the test profile end to end against `virnucpro run`, -resume, and several samples."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DATA, REPO
from nextflow_support import (
    SAMPLE_FILES,
    assert_same_outputs,
    final_outputs,
    nextflow_env,
    read_trace,
    reference_run,
    run_nextflow,
    run_pipeline,
)

pytestmark = pytest.mark.nextflow

PROCESSES = ("MAKE_TEST_MODELS", "PREPARE", "EMBED_DNA", "EMBED_PROTEIN", "PREDICT", "REPORT")


def schema_parameters() -> dict[str, dict]:
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    return {name: spec for group in schema["$defs"].values() for name, spec in group["properties"].items()}


# ---------------------------------------------------------------------------------------------
# scripts/nextflow


def test_bootstrap_runs_nextflow_from_maven_central_and_is_idempotent(tmp_path):
    env = nextflow_env(NXF_USE_PATH="0")
    first = run_nextflow("-version", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "Nextflow 24.10.0 (Maven Central runtime" in first.stderr
    assert re.search(r"version 24\.10\.0 build \d+", first.stdout), first.stdout
    again = run_nextflow("-version", cwd=tmp_path, env=env)
    assert again.returncode == 0
    assert "resolving" not in again.stderr  # the cached classpath is reused
    assert again.stdout == first.stdout


def _tool_folder(tmp_path: Path, tools: list[str]) -> Path:
    """A PATH folder with only the named commands (links to the real ones)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        (folder / tool).symlink_to(shutil.which(tool))
    return folder


BASICS = ["bash", "dirname", "readlink", "sed", "head", "cat", "mkdir", "mv", "tail"]


def test_bootstrap_says_java_is_missing(tmp_path):
    env = nextflow_env(PATH=str(_tool_folder(tmp_path, BASICS)))
    env.pop("JAVA_HOME", None)
    env.pop("JAVA_CMD", None)
    result = run_nextflow("-version", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "Java is missing" in result.stderr


def test_bootstrap_says_maven_is_missing(tmp_path):
    env = nextflow_env(
        PATH=str(_tool_folder(tmp_path, [*BASICS, "java"])), NXF_RUNTIME_DIR=str(tmp_path / "runtime")
    )
    env.pop("JAVA_HOME", None)
    result = run_nextflow("-version", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "Maven is missing" in result.stderr


def _fake_nextflow(folder: Path, version: str) -> None:
    folder.mkdir(parents=True)
    script = folder / "nextflow"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -version ]; then echo "      version {version} build 1"; exit 0; fi\n'
        'echo "installed nextflow $*"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_bootstrap_prefers_a_recent_nextflow_on_path(tmp_path):
    _fake_nextflow(tmp_path / "new", "25.10.0")
    env = nextflow_env()
    env["PATH"] = f"{tmp_path / 'new'}{os.pathsep}{env['PATH']}"
    result = run_nextflow("run", ".", "--input", "x.fa", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "installed nextflow run . --input x.fa"
    assert "Nextflow 25.10.0" in result.stderr


def test_bootstrap_ignores_an_old_nextflow_on_path(tmp_path):
    _fake_nextflow(tmp_path / "old", "23.04.1")
    env = nextflow_env()
    env["PATH"] = f"{tmp_path / 'old'}{os.pathsep}{env['PATH']}"
    result = run_nextflow("-version", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "older than 24.10" in result.stderr
    assert "version 24.10.0" in result.stdout


# ---------------------------------------------------------------------------------------------
# parameters


def test_every_config_parameter_is_in_the_schema_with_its_default(tmp_path):
    result = run_nextflow("config", "-flat", REPO, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = {}
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"params\.(\w+) = (.*)", line)
        if match:
            literal = match.group(2).replace("null", "None").replace("true", "True").replace("false", "False")
            config[match.group(1)] = ast.literal_eval(literal)
    schema = schema_parameters()
    assert set(config) == set(schema)
    for name, value in config.items():
        assert schema[name].get("default") == value, name
        assert schema[name]["description"], name


def test_help_lists_every_parameter(tmp_path):
    result = run_pipeline("--help", cwd=tmp_path)
    for name, spec in schema_parameters().items():
        if not spec.get("hidden"):
            assert f"--{name} " in result.stdout, name
    assert not any((tmp_path / "work").glob("*/*"))  # no task ran


def test_nextflow_files_pass_the_language_server():
    """Strict syntax as current Nextflow parses it (24.10 itself does not check it): no error or
    warning from the Nextflow language server on any script or config file."""
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "nextflow-lint"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    files = [
        REPO / "main.nf",
        *REPO.glob("modules/*.nf"),
        REPO / "nextflow.config",
        *REPO.glob("conf/*.config"),
    ]
    assert f"{len(files)} files, 0 errors or warnings" in result.stdout


def test_readme_documents_every_parameter():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Running with Nextflow") :]
    table = section[section.index("### Parameters") : section.index("### Published files")]
    for name, spec in schema_parameters().items():
        if not spec.get("hidden"):
            assert f"`--{name}`" in table, name


def test_container_files_agree_with_the_config_and_the_lock():
    from virnucpro import __version__

    config = (REPO / "nextflow.config").read_text()
    image = f"ghcr.io/virnucpro/virnucpro:{__version__}"
    assert f"container = '{image}'" in config
    assert f"version = '{__version__}'" in config  # the manifest
    dockerfile = (REPO / "containers" / "Dockerfile").read_text()
    assert f"-t {image} ." in dockerfile
    assert f'org.opencontainers.image.version="{__version__}"' in dockerfile
    assert "pip install --constraint /src/requirements.lock /src" in dockerfile
    assert "COPY bin/virnucpro /opt/pipeline/bin/virnucpro" in dockerfile
    assert f"docker build -f containers/Dockerfile -t {image} ." in (REPO / "README.md").read_text()

    lock = dict(
        line.strip().lower().split("==")
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    environment = yaml.safe_load((REPO / "containers" / "environment.yml").read_text())
    pip = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    pinned = dict(requirement.lower().split("==") for requirement in pip)
    pyproject = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.S | re.M).group(1)
    required = {name.lower().replace("-", "_") for name in re.findall(r'^\s*"([\w-]+)', block, re.M)}
    assert {name.replace("-", "_") for name in pinned} == required
    for name, version in pinned.items():
        assert lock[name] == version, name


BAD_PARAMETERS = [
    ([], "Missing required parameter --input"),
    (["--input", "missing.fa"], "--input 'missing.fa': no such file"),
    (["--input", "nowhere/*.fa"], "--input 'nowhere/*.fa': no file matches"),
    (["--input", DATA], "is a folder; give files or a glob"),
    (["--input", DATA / "example.fa", "--chunk_size", "400"], "--chunk_size must be 300 or 500"),
    (
        ["--input", DATA / "example.fa", "--precision", "int8"],
        "--precision must be one of fp32, bf16, fp16, fp8",
    ),
    (
        ["--input", DATA / "example.fa", "--shard_size", "0"],
        "--shard_size must be a whole number of at least 1",
    ),
    (
        ["--input", DATA / "example.fa", "--chunk-size", "300"],
        "Unknown parameter --chunk-size (did you mean --chunk_size?",
    ),
    (
        ["--input", DATA / "example.fa", "--classifier", "/nonexistent/500_model.pth"],
        "--classifier '/nonexistent/500_model.pth': no such file or folder",
    ),
    (["--input", DATA / "example.fa", "--classifier", DATA], "cannot read a classifier there"),
    (["--input", DATA / "example.fa", "--slurm_options"], "--slurm_options needs a value"),
    (
        ["--input", DATA / "example.fa", "--confidence_medium", "0.95"],
        "--confidence_medium (0.95) must not be above --confidence_high (0.9)",
    ),
    (["--input", DATA / "example.fa", "--region_max_gap", "-1"], "--region_max_gap must be a whole number"),
    (["--input", DATA / "example.fa", "--target_fdr", "1"], "--target_fdr must be between 0 and 1"),
    (
        ["--input", DATA / "example.fa", "--calibration", "missing.json"],
        "--calibration 'missing.json': no readable",
    ),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_PARAMETERS, ids=[m for _, m in BAD_PARAMETERS])
def test_bad_parameter_fails_with_its_message(tmp_path, arguments, message):
    result = run_nextflow("run", REPO, *arguments, "-stub-run", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not any((tmp_path / "work").glob("*/*"))  # stopped before any task


def test_two_files_named_as_one_sample_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(DATA / "example.fa", tmp_path / "a" / "reads.fa")
    shutil.copy(DATA / "example.fa", tmp_path / "a" / "reads.fastq")
    result = run_nextflow("run", REPO, "--input", "a/reads.*", "-stub-run", cwd=tmp_path)
    assert result.returncode != 0
    assert "reads.fa and reads.fastq would both be sample 'reads'" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# the pipeline


def test_stub_run_completes_every_process(tmp_path):
    run_pipeline("-profile", "test", "-stub-run", "--outdir", "out", cwd=tmp_path)
    trace = read_trace(tmp_path / "out")
    assert {row["process"] for row in trace} == set(PROCESSES)
    assert {row["status"] for row in trace} == {"COMPLETED"}
    sample = tmp_path / "out" / "example"
    assert sorted(p.name for p in sample.iterdir()) == sorted(SAMPLE_FILES)
    versions = (tmp_path / "out" / "pipeline_info" / "software_versions.yml").read_text()
    for process in PROCESSES:
        assert f'"{process}":' in versions


# ---------------------------------------------------------------------------------------------
# the test profile for real, against `virnucpro run`


@pytest.fixture(scope="module")
def reference(tmp_path_factory, request) -> Path:
    """`virnucpro run` on the bundled example with the test models: the outputs to match."""
    return reference_run(tmp_path_factory.mktemp("reference"), request.getfixturevalue("test_models"))


@pytest.fixture(scope="module")
def test_profile_run(tmp_path_factory) -> Path:
    """`nextflow run . -profile test`, once; returns the launch folder (results in out/)."""
    launch = tmp_path_factory.mktemp("nextflow-test-profile")
    run_pipeline("-profile", "test", "--outdir", "out", cwd=launch)
    return launch


@pytest.mark.slow
def test_test_profile_outputs_equal_virnucpro_run(test_profile_run, reference):
    outdir = test_profile_run / "out"
    assert_same_outputs(outdir / "example", reference)
    run_info = json.loads((outdir / "example" / "run.json").read_text())["nextflow"]
    assert run_info["engine"] == "nextflow"
    assert run_info["params"]["precision"] == "fp32"
    trace = read_trace(outdir)
    assert {row["status"] for row in trace} == {"COMPLETED"}
    # 30 frames in shards of 12: 3 shards, embedded 2 per task, each scored on its own
    assert sorted(row["name"] for row in trace if row["process"] != "MAKE_TEST_MODELS") == [
        "EMBED_DNA (example:1)",
        "EMBED_DNA (example:2)",
        "EMBED_PROTEIN (example:1)",
        "EMBED_PROTEIN (example:2)",
        "PREDICT (example:shard_00001)",
        "PREDICT (example:shard_00002)",
        "PREDICT (example:shard_00003)",
        "PREPARE (example)",
        "REPORT (example)",
    ]


@pytest.mark.slow
def test_resume_reruns_nothing_then_only_what_a_new_precision_touches(test_profile_run):
    launch = test_profile_run
    run_pipeline("-profile", "test", "--outdir", "out", "-resume", cwd=launch)
    trace = read_trace(launch / "out")
    assert len(trace) == 10
    assert {row["status"] for row in trace} == {"CACHED"}

    run_pipeline("-profile", "test", "--outdir", "out", "--precision", "bf16", "-resume", cwd=launch)
    trace = read_trace(launch / "out")
    for row in trace:
        expected = "CACHED" if row["process"] in ("MAKE_TEST_MODELS", "PREPARE") else "COMPLETED"
        assert row["status"] == expected, row["name"]
    run_info = json.loads((launch / "out" / "example" / "run.json").read_text())["nextflow"]
    assert run_info["params"]["precision"] == "bf16"


def _records(path: Path) -> list[tuple[str, str]]:
    """(header line, sequence lines) of every FASTA record."""
    text = path.read_text()
    return [
        (block.split("\n", 1)[0], block.split("\n", 1)[1] if "\n" in block else "")
        for block in text.split(">")[1:]
    ]


def _sequence_id(frame_id: str) -> str:
    return frame_id.rsplit("_chunk_", 1)[0]


def _scores(path: Path) -> dict[str, tuple[str, float, float]]:
    """prediction_results.txt: frame id -> (prediction, score1, score2)."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {row[0]: (row[1], float(row[2]), float(row[3])) for row in rows}


def assert_scores_match(sample_folder: Path, reference: Path, sequence_ids: list[str]) -> None:
    """The sample scored exactly its own sequences' frames, with the reference's calls and scores.
    Shards of another size batch other frames together, which moves float32 scores in the last
    digits, so scores are compared within 1e-5."""
    got = _scores(sample_folder / "prediction_results.txt")
    expected = {
        frame: row
        for frame, row in _scores(reference / "prediction_results.txt").items()
        if _sequence_id(frame) in sequence_ids
    }
    assert list(got) == list(expected)
    assert expected
    for frame, (call, others, virus) in got.items():
        assert call == expected[frame][0], frame
        assert others == pytest.approx(expected[frame][1], abs=1e-5), frame
        assert virus == pytest.approx(expected[frame][2], abs=1e-5), frame
    sequences = (sample_folder / "sequences.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in sequences[1:]] == sequence_ids


@pytest.mark.slow
def test_two_inputs_give_two_samples_and_touching_one_reruns_only_it(tmp_path, reference):
    inputs = tmp_path / "reads"
    inputs.mkdir()
    shutil.copy(DATA / "example.fa", inputs / "example.fa")
    records = _records(DATA / "example.fa")
    (inputs / "subset.fa").write_text("".join(f">{header}\n{sequence}" for header, sequence in records[:5]))
    # One shard per sample: fewer tasks than the test profile's three
    options = ("-profile", "test", "--input", "reads/*.fa", "--outdir", "out", "--shard_size", "100")

    run_pipeline(*options, cwd=tmp_path)
    outdir = tmp_path / "out"
    assert sorted(p.name for p in outdir.iterdir()) == ["example", "pipeline_info", "subset"]
    for sample, chosen in (("example", records), ("subset", records[:5])):
        assert sorted(p.name for p in (outdir / sample).iterdir()) == sorted(final_outputs(reference))
        assert_scores_match(outdir / sample, reference, [header.split()[0] for header, _ in chosen])

    os.utime(inputs / "subset.fa")  # touched: same content, newer time
    run_pipeline(*options, "-resume", cwd=tmp_path)
    trace = read_trace(outdir)
    assert len(trace) == 11
    for row in trace:
        sample = row["tag"].split(":")[0]
        assert row["status"] == ("COMPLETED" if sample == "subset" else "CACHED"), row["name"]
