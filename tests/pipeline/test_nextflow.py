"""The Nextflow pipeline run by the real engine: the runtime bootstrap, parameter checks, -stub-run,
the test profile end to end against `virnucpro run`, -resume (also after a change that only affects
speed), several samples, samplesheets, awkward file names, and a failing sample beside good ones."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import DATA, REPO, run_cli
from nextflow_support import (
    CALIBRATED_TARGET_FDR,
    NEXTFLOW,
    SAMPLE_FILES,
    assert_same_outputs,
    assert_scores_match,
    fasta_records,
    final_outputs,
    make_calibration,
    nextflow_env,
    outdir_entries,
    read_trace,
    run_like_the_test_profile,
    run_nextflow,
    run_pipeline,
    trace_files,
    write_records,
)
from summary_rows import expected_row, read_tsv
from synthetic import write_calibration_json

PROCESSES = ("MAKE_TEST_MODELS", "MODEL_IDENTITY", "PREPARE", "EMBED", "REPORT", "SUMMARY", "MULTIQC")
# Tasks are named after the workflow that runs them (VIRNUCPRO:EMBED); versions.yml by the short name
TASK_PROCESSES = tuple(f"VIRNUCPRO:{process}" for process in PROCESSES)


def schema_parameters() -> dict[str, dict]:
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    return {name: spec for group in schema["$defs"].values() for name, spec in group["properties"].items()}


# ---------------------------------------------------------------------------------------------
# scripts/nextflow


@pytest.mark.nextflow
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


@pytest.mark.nextflow
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


@pytest.mark.nextflow
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
    # The run's start time, so each run (a resumed one too) writes its own trace, report and timeline
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", config.pop("trace_report_suffix"))
    assert "default" not in schema["trace_report_suffix"]
    for name, value in config.items():
        assert schema[name].get("default") == value, name
        assert schema[name]["description"], name


@pytest.mark.nextflow
def test_help_lists_every_parameter(tmp_path):
    result = run_pipeline("--help", cwd=tmp_path)
    for name, spec in schema_parameters().items():
        if not spec.get("hidden"):
            assert f"--{name} " in result.stdout, name
    assert not any((tmp_path / "work").glob("*/*"))  # no task ran


@pytest.mark.nextflow
def test_nextflow_files_pass_the_language_server():
    """Strict syntax as current Nextflow parses it (24.10 itself does not check it): no error or
    warning from the Nextflow language server on any script or config file."""
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "nextflow-lint"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    files = [
        REPO / "main.nf",
        *REPO.glob("workflows/*.nf"),
        *REPO.glob("subworkflows/**/*.nf"),
        *REPO.glob("modules/*.nf"),
        REPO / "nextflow.config",
        *REPO.glob("conf/*.config"),
    ]
    assert f"{len(files)} files, 0 errors or warnings" in result.stdout


def test_language_server_check_waits_for_every_file_it_opened(tmp_path):
    """The server also reports workspace files nobody opened (the test workflows under tests/);
    those once ended the wait early and left a pipeline file unchecked ("gave no result")."""
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    skipped = {".venv", ".nf-runtime", "work", ".git"}
    for path in [*REPO.rglob("*.nf"), *REPO.rglob("*.config")]:
        relative = path.relative_to(REPO)
        if not skipped & set(relative.parts):
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tmp_path / relative)
    assert any(tmp_path.glob("tests/**/*.nf"))  # the files that are reported but not asked for
    result = subprocess.run(
        [sys.executable, tmp_path / "scripts" / "nextflow-lint"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NXF_RUNTIME_DIR": os.environ.get("NXF_RUNTIME_DIR", str(REPO / ".nf-runtime"))},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tests/" not in result.stdout


def test_readme_documents_every_parameter():
    usage = (REPO / "docs" / "usage.md").read_text()
    table = usage[usage.index("## Parameters") : usage.index("## Options without a parameter")]
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
    assert "pip install --quiet --no-deps --requirement /src/requirements.lock" in dockerfile
    assert f"docker build -f containers/Dockerfile -t {image} ." in (REPO / "docs" / "usage.md").read_text()

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


def test_release_workflow_pushes_the_image_the_config_names():
    """On a release tag, the workflow builds containers/Dockerfile and pushes the image that
    --container names by default, tagged with the version."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"]  # YAML reads the key `on` as True
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    build = next(step for step in steps if "docker/build-push-action" in step.get("uses", ""))
    assert build["with"]["file"] == "containers/Dockerfile"
    assert build["with"]["push"] is True
    assert "ghcr.io/${{ github.repository_owner }}/virnucpro" in build["with"]["tags"]


BAD_PARAMETERS = [
    ([], "Missing required parameter --input"),
    (["--input", "missing.fa"], "--input 'missing.fa': no such file"),
    (["--input", "nowhere/*.fa"], "--input 'nowhere/*.fa': no file matches"),
    (["--input", DATA], "is a folder; give files or a glob"),
    (
        ["--input", DATA / "example.fa", DATA / "example.fa"],
        "Unexpected argument(s) " + str(DATA / "example.fa") + ": quote a glob",
    ),
    (["--input", DATA / "example.fa", "--chunk_size", "400"], "--chunk_size must be 300 or 500"),
    (
        ["--input", DATA / "example.fa", "--precision", "int8"],
        "--precision must be one of fp32, bf16, fp16, fp8",
    ),
    (
        ["--input", DATA / "example.fa", "--precision", "fp8"],
        "--precision fp8 needs GPUs of compute capability 9.0 or later (Hopper)",
    ),
    (
        ["--input", DATA / "example.fa", "--shard_size", "0"],
        "--shard_size must be a whole number from 1 to 2147483647, got '0'",
    ),
    (
        ["--input", DATA / "example.fa", "--region_min_chunks", "100000000000000000000"],
        "--region_min_chunks must be a whole number from 1 to 2147483647",
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
    (
        ["--input", DATA / "example.fa", "--target_fdr", "1"],
        "--target_fdr must be a number between 0 and 1 (exclusive)",
    ),
    (
        ["--input", DATA / "example.fa", "--calibration", "missing.json"],
        "--calibration 'missing.json': no readable",
    ),
    (
        ["--input", DATA / "example.fa", "--max_memory", "lots"],
        "--max_memory must be a memory such as '256.GB'",
    ),
    (
        ["--input", DATA / "example.fa", "--max_time", "3 weeks"],
        "--max_time must be a duration such as '72.h'",
    ),
    (["--input", DATA / "example.fa", "--gpu_lock_dir", "locks"], "--gpu_lock_dir must be an absolute path"),
    (
        ["--input", DATA / "example.fa", "--dnabert_model", DATA, "--dnabert_revision", "v1"],
        "--dnabert_revision 'v1' applies to hub models, not to the local folder",
    ),
    (
        # Offline (the Maven runtime sets NXF_OFFLINE; HF_HUB_OFFLINE is set too) with hub models
        # that no cache holds: the download-models hint at once, not a failed task later
        ["--input", DATA / "example.fa", "--dnabert_model", "nobody/not-cached"],
        "--dnabert_model 'nobody/not-cached': the run is offline (NXF_OFFLINE, HF_HUB_OFFLINE set) and no local cache holds this model; fetch the models where there is network with `virnucpro download-models --outdir DIR`",
    ),
]


@pytest.mark.nextflow
@pytest.mark.parametrize(("arguments", "message"), BAD_PARAMETERS, ids=[m[:60] for _, m in BAD_PARAMETERS])
def test_bad_parameter_fails_with_its_message(tmp_path, arguments, message):
    result = run_nextflow("run", REPO, *arguments, "-stub-run", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not any((tmp_path / "work").glob("*/*"))  # stopped before any task


# What the parameter checker (subworkflows/local/utils_params_schema) reads from the schema, and the
# entries that only describe: a schema entry with any other key is a constraint nobody checks
CHECKED = {"type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern"}
DESCRIBING = {"default", "description", "hidden", "fa_icon", "help_text", "errorMessage", "format", "exists"}
INT_LIMIT = 2147483647  # the implicit maximum of an integer parameter


def constraint_cases(name: str, spec: dict) -> list[tuple[object, bool]]:
    """(value, accepted) pairs that probe every constraint of one schema entry."""
    cases: list[tuple[object, bool]] = []
    kind = spec["type"]
    if "enum" in spec:
        cases += [(choice, True) for choice in spec["enum"]] + [("not-a-choice", False)]
        if kind == "integer":
            cases.append((max(spec["enum"]) + 1, False))
        return cases
    if kind == "string":
        cases.append((True, False))  # a bare flag
    if kind == "integer":
        cases += [(1.5, False), ("ten", False)]
        if "maximum" not in spec:
            cases += [(INT_LIMIT, True), (INT_LIMIT + 1, False)]
    if kind == "number":
        cases.append(("abc", False))
    for key, accepted in (
        ("minimum", True),
        ("maximum", True),
        ("exclusiveMinimum", False),
        ("exclusiveMaximum", False),
    ):
        if key in spec:
            cases.append((spec[key], accepted))
    if "minimum" in spec:
        cases.append((spec["minimum"] - 1, False))
    if "maximum" in spec:
        cases.append((spec["maximum"] + 1, False))
    if "pattern" in spec:
        wrong = next(value for value in ("@", "x", "/") if not re.search(spec["pattern"], value))
        cases += [(spec["default"], True), (wrong, False)]
    return cases


@pytest.mark.nextflow
def test_the_parameter_checker_enforces_every_schema_constraint(tmp_path):
    """For every parameter with a type, choices, bounds or a pattern in nextflow_schema.json, values
    on both sides of each constraint, given one at a time with every other parameter at its default,
    checked by the pipeline's checker itself (all cases in one Nextflow start): what breaks the
    schema is refused with one line that names the parameter and the value, the rest accepted."""
    schema = schema_parameters()
    for name, spec in schema.items():
        assert set(spec) <= CHECKED | DESCRIBING, f"{name}: {set(spec) - CHECKED - DESCRIBING} is not checked"
    defaults = {name: spec.get("default") for name, spec in schema.items()}
    probes = [
        (name, value, accepted)
        for name, spec in schema.items()
        for value, accepted in constraint_cases(name, spec)
    ]
    probed = {name for name, _, accepted in probes if not accepted}
    assert probed == {name for name, spec in schema.items() if spec["type"] != "boolean"}
    cases = [defaults] + [defaults | {name: value} for name, value, _ in probes]
    cases.append(defaults | {"chunk-size": 300, "chunkSize": 300})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    result = run_nextflow(
        "run", REPO / "tests" / "nextflow" / "parameter_checks.nf", "--cases", tmp_path / "cases.json",
        "--schema", REPO / "nextflow_schema.json", "--results", tmp_path / "results.json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == len(cases)
    assert results[0] is None  # the defaults pass
    assert results[-1] == (
        "nextflow.exception.WorkflowScriptErrorException\tUnknown parameter --chunk-size (did you mean "
        "--chunk_size? parameters use underscores); see --help"
    )
    for (name, value, accepted), outcome in zip(probes, results[1:-1], strict=True):
        if accepted:
            assert outcome is None, (name, value, outcome)
            continue
        assert outcome is not None, f"--{name} {value!r} was accepted"
        kind, message = outcome.split("\t", 1)
        assert kind == "nextflow.exception.WorkflowScriptErrorException", outcome
        assert "\n" not in message and message.startswith(f"--{name} "), message
        given = "true" if value is True else str(value)
        assert f"got '{given}'" in message or (value is True and "needs a value" in message), message


@pytest.mark.nextflow
def test_each_sample_ends_with_its_outcome(tmp_path):
    """What each sample reached gives its outcome, [meta, status, failed stage, result folder] (the
    channel VIRNUCPRO emits as `outcomes` for steps after all samples), and the run's closing lines."""
    events = [
        *(["done", "listed", 1], ["prepare fails", "listed", 1], ["one group short", "listed", 1]),
        *(["nothing to embed", "listed", 1], ["report fails", "listed", 1]),
        *(["done", "prepared", 2], ["done", "embedded", 1], ["done", "embedded", 1], ["done", "reported", 1]),
        *(["one group short", "prepared", 3], ["one group short", "embedded", 1]),
        *(["nothing to embed", "prepared", 0], ["nothing to embed", "reported", 1]),
        *(["report fails", "prepared", 1], ["report fails", "embedded", 1]),
    ]
    (tmp_path / "events.json").write_text(json.dumps(events))
    result = run_nextflow(
        "run", REPO / "tests" / "nextflow" / "outcomes.nf", "--events", tmp_path / "events.json",
        "--outdir", "out", "--results", tmp_path / "results.json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert [[meta["id"], status, stage] for meta, status, stage, _ in results["outcomes"]] == [
        ["done", "finished", None],
        ["prepare fails", "failed", "PREPARE"],
        ["one group short", "failed", "EMBED"],
        ["nothing to embed", "finished", None],
        ["report fails", "failed", "REPORT"],
    ]
    folders = {meta["id"]: folder for meta, _, _, folder in results["outcomes"]}
    assert folders["done"] == str(tmp_path / "out" / "done") and folders["prepare fails"] is None
    assert results["summary"].splitlines() == [
        "VirNucPro, the pipeline: 5 sample(s)",
        "  done: finished: out/done/",
        "  prepare fails: FAILED in PREPARE",
        "  one group short: FAILED in EMBED (1 of 3 shard groups embedded and scored)",
        "  nothing to embed: finished: out/nothing to embed/",
        "  report fails: FAILED in REPORT",
        "All samples in one table: out/summary.tsv (summary.html, multiqc/ beside it)",
        "3 sample(s) failed (the other samples are complete); the failed tasks are marked FAILED in "
        "out/pipeline_info/execution_trace_*.txt, with their error in the work folder's .command.err. "
        "Fix the cause and run again with -resume.",
    ]


@pytest.mark.nextflow
@pytest.mark.parametrize("form", ["published file name", "converted folder"])
def test_a_classifier_for_another_chunk_size_is_refused(tmp_path, form):
    """Before any task: a classifier whose file name (300_model.pth) or config.json says it was
    trained on 300 bp chunks, with --chunk_size 500."""
    if form == "published file name":
        classifier = tmp_path / "300_model.pth"
        classifier.write_bytes(b"PK")  # the name decides; the contents are read by the tasks
    else:
        classifier = tmp_path / "classifier-300"
        classifier.mkdir()
        (classifier / "model.safetensors").write_bytes(b"weights")
        (classifier / "config.json").write_text('{"chunk_size": 300, "input_dim": 3328}')
    arguments = ("--input", DATA / "example.fa", "--classifier", classifier, "--chunk_size", "500")
    result = run_nextflow("run", REPO, *arguments, "-stub-run", cwd=tmp_path)
    assert result.returncode != 0
    assert (
        "a classifier for 300 bp chunks, but the chunks are 500 bp (--chunk_size)"
        in result.stdout + result.stderr
    )
    assert not any((tmp_path / "work").glob("*/*"))


@pytest.mark.nextflow
def test_two_files_named_as_one_sample_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(DATA / "example.fa", tmp_path / "a" / "reads.fa")
    shutil.copy(DATA / "example.fa", tmp_path / "a" / "reads.fastq")
    result = run_nextflow("run", REPO, "--input", "a/reads.*", "-stub-run", cwd=tmp_path)
    assert result.returncode != 0
    assert "reads.fa and reads.fastq would both be sample 'reads'" in result.stdout + result.stderr


BAD_SAMPLESHEETS = [
    ("name,path\nx,a.fa\n", "a samplesheet needs a header line with the columns sample and file"),
    ("sample,file\n", "the samplesheet lists no sample"),
    ("sample,file\nx,missing.fa\n", "line 2: " + "{folder}/missing.fa: no such file"),
    ("sample,file\nx,a.fa,extra\n", "line 2: 3 values for the 2 columns of the header"),
    ("sample,file\nx,\n", "line 2: both sample and file need a value"),
    ("sample,file\nx,a.fa\nx,a.fa\n", "line 3: a.fa is listed twice for sample 'x'"),
    # the same file under another path, found before PREPARE
    ("sample,file\nx,a.fa\nx,./a.fa\n", "line 3: ./a.fa is listed twice for sample 'x'"),
    ("sample,file\nx/y,a.fa\n", "'x/y' cannot be a sample name"),
]


@pytest.mark.nextflow
@pytest.mark.parametrize(("content", "message"), BAD_SAMPLESHEETS, ids=[m[:40] for _, m in BAD_SAMPLESHEETS])
def test_bad_samplesheet_fails_with_its_message(tmp_path, content, message):
    sheet = tmp_path / "sheets" / "samples.csv"
    sheet.parent.mkdir()
    (sheet.parent / "a.fa").write_text(">a\nACGT\n")
    sheet.write_text(content)
    result = run_nextflow("run", REPO, "--input", sheet, "-stub-run", cwd=tmp_path)
    assert result.returncode != 0
    assert message.format(folder=sheet.parent) in result.stdout + result.stderr
    assert not any((tmp_path / "work").glob("*/*"))


@pytest.mark.nextflow
def test_a_samplesheet_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a byte-order mark: the header is still the header.
    (The run then stops at the first check after the samplesheet: an offline hub model.)"""
    sheet = tmp_path / "samples.csv"
    shutil.copy(DATA / "example.fa", tmp_path / "a.fa")
    sheet.write_bytes("\ufeffsample,file\r\nx,a.fa\r\n".encode())
    result = run_nextflow(
        "run", REPO, "--input", sheet, "--dnabert_model", "nobody/not-cached", "-stub-run", cwd=tmp_path
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "needs a header line" not in output
    assert "--dnabert_model 'nobody/not-cached': the run is offline" in output


@pytest.mark.nextflow
@pytest.mark.parametrize(
    "case", ["another chunk size", "another classifier", "not a calibration", "target out of reach"]
)
def test_a_calibration_that_cannot_fit_is_refused_before_any_task(tmp_path, test_models, case):
    """--calibration is checked with the parameters: its chunk size, the classifier it was made for
    (a local one's weights), whether it reaches --target_fdr, not in REPORT after the embedding."""
    from virnucpro.files.checksums import file_sha256

    ours = file_sha256(test_models / "classifier" / "model.safetensors")
    calibration = write_calibration_json(
        tmp_path / "cal",
        chunk_size=300 if case == "another chunk size" else 500,
        classifier_sha256="ab" * 32 if case == "another classifier" else ours,
    )
    if case == "not a calibration":
        calibration.write_text('{"format": "something else"}')
    arguments = [
        "--input",
        DATA / "example.fa",
        "--calibration",
        calibration,
        "--classifier",
        test_models / "classifier",
    ]
    if case == "target out of reach":
        arguments += ["--target_fdr", "0.0001"]
    message = {
        "another chunk size": "calibrated on 300 bp chunks, but the chunks are 500 bp (--chunk_size)",
        "another classifier": "calibrated for another classifier (sha256 abababababab...",
        "not a calibration": "not a calibration file of `virnucpro calibrate`",
        "target out of reach": "on the calibration set; give a larger --target_fdr",
    }[case]
    result = run_nextflow("run", REPO, *arguments, "-stub-run", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not any((tmp_path / "work").glob("*/*"))


# ---------------------------------------------------------------------------------------------
# the pipeline


@pytest.mark.nextflow
def test_stub_run_completes_every_process(tmp_path):
    result = run_pipeline("-profile", "test", "-stub-run", "--outdir", "out", cwd=tmp_path)
    trace = read_trace(tmp_path / "out")
    assert {row["process"] for row in trace} == set(TASK_PROCESSES)
    assert {row["status"] for row in trace} == {"COMPLETED"}
    sample = tmp_path / "out" / "example"
    assert sorted(p.name for p in sample.iterdir()) == sorted(SAMPLE_FILES)
    info = tmp_path / "out" / "pipeline_info"
    versions = (info / "software_versions.yml").read_text()
    for process in PROCESSES:
        assert f'"{process}":' in versions
    suffix = trace_files(tmp_path / "out")[0].name.removeprefix("execution_trace_").removesuffix(".txt")
    assert (info / f"execution_report_{suffix}.html").is_file()
    assert (info / f"execution_timeline_{suffix}.html").is_file()
    assert "example: finished: out/example/" in result.stdout


@pytest.mark.nextflow
def test_file_names_with_spaces_and_leading_dashes_become_samples(tmp_path):
    """A quoted glob that matches awkward names: each file is staged and named as it is."""
    reads = tmp_path / "my reads"
    reads.mkdir()
    for name in ("Sample 1.fa", "-dash.fasta.gz", "plain.fq"):
        (reads / name).write_text(">a\nACGT\n")
    result = run_pipeline(
        "-profile", "test", "-stub-run", "--input", f"{reads}/*", "--outdir", "out", cwd=tmp_path
    )
    outdir = tmp_path / "out"
    assert sorted(p.name for p in outdir.iterdir()) == outdir_entries(["-dash", "Sample 1", "plain"])
    for sample in ("-dash", "Sample 1", "plain"):
        assert f"  {sample}: finished: out/{sample}/" in result.stdout
    prepare = {row["tag"]: row["hash"] for row in read_trace(outdir) if row["process"] == "VIRNUCPRO:PREPARE"}
    staged = next((tmp_path / "work").glob(f"{prepare['-dash']}*/reads/1/-dash.fasta.gz"))
    assert staged.resolve() == reads / "-dash.fasta.gz"


# ---------------------------------------------------------------------------------------------
# the test profile for real, against `virnucpro run`


@pytest.fixture(scope="module")
def test_profile_run(tmp_path_factory) -> Path:
    """`nextflow run . -profile test`, once; returns the launch folder (results in out/)."""
    launch = tmp_path_factory.mktemp("nextflow-test-profile")
    run_pipeline("-profile", "test", "--outdir", "out", cwd=launch)
    return launch


# 30 frames in shards of 12: 3 shards in groups of 2, each group embedded (both models) and scored
# by one task; the two local test models' identities computed once
TEST_PROFILE_TASKS = [
    "VIRNUCPRO:EMBED (example:1)",
    "VIRNUCPRO:EMBED (example:2)",
    "VIRNUCPRO:MAKE_TEST_MODELS (test models)",
    "VIRNUCPRO:MODEL_IDENTITY (dnabert)",
    "VIRNUCPRO:MODEL_IDENTITY (esm)",
    "VIRNUCPRO:MULTIQC (all samples)",
    "VIRNUCPRO:PREPARE (example)",
    "VIRNUCPRO:REPORT (example)",
    "VIRNUCPRO:SUMMARY (1 samples)",
]


@pytest.mark.xdist_group("test-profile-run")  # one worker owns the shared launch folder
@pytest.mark.nextflow
@pytest.mark.slow
def test_test_profile_outputs_equal_virnucpro_run(test_profile_run, example_reference):
    outdir = test_profile_run / "out"
    assert_same_outputs(outdir / "example", example_reference)
    run_info = json.loads((outdir / "example" / "run.json").read_text())["nextflow"]
    assert run_info["engine"] == "nextflow"
    assert run_info["params"]["precision"] == "fp32"
    trace = read_trace(outdir)
    assert {row["status"] for row in trace} == {"COMPLETED"}
    assert sorted(row["name"] for row in trace) == TEST_PROFILE_TASKS
    # the test profile caps every task at one CPU and 6 GB, and embeds on the CPU; REPORT asks for
    # what the sample's counts need (2 GB and 300 bytes a sequence, 100 a chunk: about 2 GB here);
    # SUMMARY and MULTIQC have the default 2 GB
    small = {"VIRNUCPRO:REPORT", "VIRNUCPRO:SUMMARY", "VIRNUCPRO:MULTIQC"}
    for row in trace:
        expected = "2 GB" if row["process"] in small else "6 GB"
        assert (row["cpus"], row["memory"]) == ("1", expected), row["name"]

    def task_folder(row) -> Path:
        return next((test_profile_run / "work").glob(f"{row['hash']}*"))

    for row in trace:
        if row["process"] == "VIRNUCPRO:EMBED":
            script = (task_folder(row) / ".command.sh").read_text()
            assert "--devices cpu --workers 1" in script and "claim-gpus" not in script
            assert "--classifier" in script  # scored where embedded: no PREDICT task
            assert "import torch" not in script  # versions.yml reads the package metadata
            assert not list((task_folder(row) / "embeddings").glob("*.dnabert.parquet"))  # not kept
        if row["process"] == "VIRNUCPRO:REPORT":
            # prepare's tables are staged, not its shards
            staged = sorted(p.name for p in (task_folder(row) / "prepared").iterdir())
            assert staged == ["chunk_frames.tsv", "input_sequences.tsv", "prepare.json"]


@pytest.mark.xdist_group("test-profile-run")  # one worker owns the shared launch folder
@pytest.mark.nextflow
@pytest.mark.slow
def test_resume_reruns_nothing_then_only_what_a_new_precision_touches(test_profile_run):
    launch = test_profile_run
    run_pipeline("-profile", "test", "--outdir", "out", "-resume", cwd=launch)
    trace = read_trace(launch / "out")
    assert sorted(row["name"] for row in trace) == TEST_PROFILE_TASKS
    assert {row["status"] for row in trace} == {"CACHED"}
    # each run has its own trace, report and timeline
    assert len(trace_files(launch / "out")) == 2
    assert len(list((launch / "out" / "pipeline_info").glob("execution_report_*.html"))) == 2

    # Speed only: batch sizes, workers and GPUs keep every finished task, run.json included
    run_json = (launch / "out" / "example" / "run.json").read_bytes()
    speed = ("--dnabert_batch_size", "7", "--esm_tokens_per_batch", "512", "--cpu_workers", "2")
    gpus = ("--gpus", "2", "--gpu_lock_dir", launch / "gpu-locks")
    run_pipeline("-profile", "test", "--outdir", "out", *speed, *gpus, "-resume", cwd=launch)
    trace = read_trace(launch / "out")
    assert len(trace) == len(TEST_PROFILE_TASKS)
    assert {row["status"] for row in trace} == {"CACHED"}
    assert (launch / "out" / "example" / "run.json").read_bytes() == run_json

    run_pipeline("-profile", "test", "--outdir", "out", "--precision", "bf16", "-resume", cwd=launch)
    trace = read_trace(launch / "out")
    for row in trace:
        expected = "CACHED" if row["process"] in TASK_PROCESSES[:3] else "COMPLETED"
        assert row["status"] == expected, row["name"]
    run_info = json.loads((launch / "out" / "example" / "run.json").read_text())["nextflow"]
    assert run_info["params"]["precision"] == "bf16"


@pytest.mark.xdist_group("test-profile-run")  # one worker owns the shared launch folder
@pytest.mark.nextflow
@pytest.mark.slow
def test_keep_embeddings_publishes_the_files_embed_writes(test_profile_run, example_reference, tmp_path):
    """--keep_embeddings: the embedding files are written beside the scores and published; the
    outputs stay those of `virnucpro run`, and the files those of `virnucpro embed`."""
    launch = test_profile_run
    # Its own launch folder: a run in the shared one would be what the next test's -resume resumes.
    run_pipeline("-profile", "test", "--outdir", "kept", "--keep_embeddings", cwd=tmp_path)
    sample = tmp_path / "kept" / "example"
    assert_same_outputs(sample, example_reference, besides="embeddings")
    published = sorted((sample / "embeddings").glob("shard_*.parquet"))
    assert [p.name for p in published] == [
        f"shard_0000{i}.{kind}.parquet" for i in (1, 2, 3) for kind in ("dnabert", "esm")
    ]
    models = launch / "out" / "example" / "embeddings"  # not published by the first run
    assert not models.exists()
    from virnucpro.files.embedding_files import read_embeddings

    for path in published:
        table = read_embeddings(path)
        assert table.vectors.shape[0] == int(table.metadata["rows"]) and "dtype" not in table.metadata


@pytest.mark.xdist_group("test-profile-run")  # one worker owns the shared launch folder
@pytest.mark.nextflow
@pytest.mark.slow
def test_run_json_records_the_batch_settings_of_reused_embeddings(test_profile_run):
    """After a resume with other batch sizes, run.json still names the batch settings the reused
    embeddings were made with (the defaults of the first run), read from their metadata
    (`batch_size`/`tokens_per_batch`)."""
    launch = test_profile_run
    run_pipeline(
        *("-profile", "test", "--outdir", "out", "-resume"),
        *("--dnabert_batch_size", "3", "--esm_tokens_per_batch", "300"),
        cwd=launch,
    )
    models = json.loads((launch / "out" / "example" / "run.json").read_text())["models"]
    recorded = {key.rsplit(".", 1)[-1]: value for key, value in models.items() if key.endswith("batch")}
    recorded |= {key.rsplit(".", 1)[-1]: value for key, value in models.items() if key.endswith("batch_size")}
    assert recorded == {"batch_size": "256", "tokens_per_batch": "16384"}, models


@pytest.mark.nextflow
@pytest.mark.slow
def test_two_inputs_give_two_samples_and_touching_one_reruns_only_it(tmp_path, example_reference):
    inputs = tmp_path / "reads"
    inputs.mkdir()
    shutil.copy(DATA / "example.fa", inputs / "example.fa")
    records = fasta_records(DATA / "example.fa")
    write_records(inputs / "subset.fa", records[:5])
    # One shard per sample: fewer tasks than the test profile's three
    options = ("-profile", "test", "--input", "reads/*.fa", "--outdir", "out", "--shard_size", "100")

    run_pipeline(*options, cwd=tmp_path)
    outdir = tmp_path / "out"
    assert sorted(p.name for p in outdir.iterdir()) == outdir_entries(["example", "subset"])
    for sample, chosen in (("example", records), ("subset", records[:5])):
        assert sorted(p.name for p in (outdir / sample).iterdir()) == sorted(final_outputs(example_reference))
        assert_scores_match(outdir / sample, example_reference, [header.split()[0] for header, _ in chosen])

    os.utime(inputs / "subset.fa")  # touched: same content, newer time
    run_pipeline(*options, "-resume", cwd=tmp_path)
    trace = read_trace(outdir)
    assert len(trace) == 11  # models 3, per sample PREPARE, EMBED (scored there), REPORT; SUMMARY, MULTIQC
    for row in trace:
        sample = row["tag"].split(":")[0]
        # the run-wide steps read every sample's results: made again, from subset's new report
        again = sample == "subset" or row["process"] in ("VIRNUCPRO:SUMMARY", "VIRNUCPRO:MULTIQC")
        assert row["status"] == ("COMPLETED" if again else "CACHED"), row["name"]


@pytest.mark.nextflow
@pytest.mark.slow
def test_samplesheet_awkward_names_and_a_failing_sample(tmp_path, example_reference):
    """A samplesheet whose samples have spaces and leading dashes in their names and files, one
    sample without any frame to embed, and one whose input is broken: the others finish (with the
    reference's scores), the broken one is reported as failed at the end, and the run exits
    non-zero."""
    records = fasta_records(DATA / "example.fa")
    data = tmp_path / "data"
    data.mkdir()
    first = write_records(data / "Sample 1.fa", records[:3])
    second = write_records(data / "-dash.fa", records[3:6])
    # protein, not DNA: PREPARE fails
    (data / "broken.fa").write_text(">x\nMKVLAAGIVGLLLAQPWRST\n>y\nMQQLLAAGIVGLLLAKKEEL\n")
    # no frame to translate: nothing to embed, a report all the same
    (data / "unknown.fa").write_text(">n1\nNNNNNNNNNNNN\n")
    sheet = tmp_path / "sheet" / "samples.csv"
    sheet.parent.mkdir()
    sheet.write_text(
        "sample,file\nSample 1,../data/Sample 1.fa\n-dash,../data/-dash.fa\nbroken,../data/broken.fa\n"
        "unknown,../data/unknown.fa\n"
    )

    result = run_nextflow(
        *("run", REPO, "-profile", "test", "--input", sheet, "--outdir", "out", "--shard_size", "100"),
        cwd=tmp_path,
    )
    assert result.returncode != 0, result.stdout
    outdir = tmp_path / "out"
    assert sorted(p.name for p in outdir.iterdir()) == outdir_entries(["-dash", "Sample 1", "unknown"])
    assert_scores_match(outdir / "Sample 1", example_reference, first)
    assert_scores_match(outdir / "-dash", example_reference, second)
    sequences = (outdir / "unknown" / "sequences.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in sequences[1:]] == ["n1"]
    row = dict(zip(sequences[0].split("\t"), sequences[1].split("\t"), strict=True))
    assert (row["call"], row["kind"]) == ("unscored", "none")
    for sample in ("Sample 1", "-dash", "unknown"):
        assert f"  {sample}: finished: out/{sample}/" in result.stdout
    assert "  broken: FAILED in PREPARE" in result.stdout
    assert "1 sample(s) failed (the other samples are complete)" in result.stdout
    statuses = {row["name"]: row["status"] for row in read_trace(outdir)}
    assert statuses["VIRNUCPRO:PREPARE (broken)"] == "FAILED"
    assert statuses["VIRNUCPRO:REPORT (Sample 1)"] == statuses["VIRNUCPRO:REPORT (-dash)"] == "COMPLETED"


@pytest.mark.nextflow
@pytest.mark.slow
def test_a_run_of_three_samples_reads_as_one(tmp_path, example_reference):
    """Two good samples and one whose input is empty: summary.tsv has three rows in the
    samplesheet's order, the finished rows' counts equal their own sequences.tsv, the third says
    failed at PREPARE; MultiQC's General Statistics hold both finished samples with summary.tsv's
    values; `virnucpro summarize` on the two result folders writes the same rows."""
    records = fasta_records(DATA / "example.fa")
    data = tmp_path / "data"
    data.mkdir()
    write_records(data / "first.fa", records[:4])
    write_records(data / "second.fa", records[4:9])
    (data / "empty.fa").write_bytes(b"")
    sheet = tmp_path / "samples.csv"
    sheet.write_text("sample,file\nfirst,data/first.fa\nsecond,data/second.fa\nempty,data/empty.fa\n")

    result = run_nextflow(
        *("run", REPO, "-profile", "test", "--input", sheet, "--outdir", "out", "--shard_size", "100"),
        cwd=tmp_path,
    )
    assert result.returncode != 0, result.stdout  # a sample failed
    out = tmp_path / "out"
    assert "All samples in one table: out/summary.tsv (summary.html, multiqc/ beside it)" in result.stdout
    assert {"summary.tsv", "summary.json", "summary.html", "multiqc"} <= {p.name for p in out.iterdir()}

    rows = read_tsv(out / "summary.tsv")
    assert [row["sample"] for row in rows] == ["first", "second", "empty"]
    for row in rows[:2]:
        assert {k: v for k, v in row.items() if k != "sample"} == expected_row(out / row["sample"])
    assert (rows[2]["status"], rows[2]["failed_stage"]) == ("failed", "PREPARE")
    assert json.loads((out / "summary.json").read_text())["samples"][2]["status"] == "failed"

    stats = read_tsv(out / "multiqc" / "multiqc_data" / "multiqc_general_stats.txt")
    assert (out / "multiqc" / "multiqc_report.html").is_file()
    by_sample = {row["Sample"]: row for row in stats}
    assert sorted(by_sample) == ["first", "second"]
    for row in rows[:2]:
        (key,) = [k for k in by_sample[row["sample"]] if k.endswith("-viral_bases_in_regions")]
        assert float(by_sample[row["sample"]][key]) == int(row["viral_bases_in_regions"])
    from virnucpro import __version__

    versions = {
        row["Sample"]: row
        for row in read_tsv(out / "multiqc" / "multiqc_data" / "multiqc_software_versions.txt")
    }
    assert {
        "VIRNUCPRO:PREPARE",
        "VIRNUCPRO:EMBED",
        "VIRNUCPRO:REPORT",
        "VIRNUCPRO:SUMMARY",
    } <= versions.keys()
    assert {row["virnucpro"] for row in versions.values()} == {__version__}

    done = run_cli("summarize", out / "first", out / "second", "--outdir", tmp_path / "cli", "--quiet")
    assert done.returncode == 0, done.stderr
    assert read_tsv(tmp_path / "cli" / "summary.tsv") == rows[:2]


@pytest.mark.nextflow
@pytest.mark.slow
def test_a_sample_is_reported_while_another_still_waits(tmp_path, example_reference):
    """Each sample's REPORT starts when its own groups are scored, not when every sample's are:
    on a host simulated with 2 GPUs, one of which this test holds, sample `small` (one shard, one
    GPU) runs to its report while sample `large` (two shards, two GPUs) is still waiting for its
    GPUs; released, `large` then finishes too. (Embedding itself on the CPU.)"""
    records = fasta_records(DATA / "example.fa")
    reads = tmp_path / "reads"
    reads.mkdir()
    small = write_records(reads / "small.fa", records[:1])
    large = write_records(reads / "large.fa", records)
    config = tmp_path / "embed-on-cpu.config"
    config.write_text("process {\n    withName: 'EMBED' {\n        ext.devices = 'cpu'\n    }\n}\n")
    locks = tmp_path / "locks"
    locks.mkdir()
    with open(locks / "gpu-1.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run = subprocess.Popen(
            [
                *(NEXTFLOW, "run", REPO, "-profile", "test", "-c", config, "--input", f"{reads}/*.fa"),
                *("--outdir", "out", "--shard_size", "20", "--gpus", "2", "--gpu_lock_dir", locks),
            ],
            cwd=tmp_path,
            env=nextflow_env(VIRNUCPRO_SIMULATED_GPUS="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 900
            while not (tmp_path / "out" / "small" / "run.json").exists():
                assert run.poll() is None, run.stdout.read()
                assert time.monotonic() < deadline, "sample small was never reported"
                time.sleep(1)
            assert not (tmp_path / "out" / "large").exists()
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    assert_scores_match(tmp_path / "out" / "small", example_reference, small)
    assert_scores_match(tmp_path / "out" / "large", example_reference, large)


@pytest.mark.nextflow
@pytest.mark.slow
def test_a_calibration_is_staged_into_the_report(tmp_path, example_reference, test_models):
    """--calibration: REPORT gets the file staged (a container sees it too) and calls as
    `virnucpro run --calibration` does, byte for byte."""
    calibration = make_calibration(example_reference, tmp_path / "labelled")
    options = ("--calibration", calibration)
    run_pipeline(
        *("-profile", "test", "--outdir", "out", *options, "--target_fdr", CALIBRATED_TARGET_FDR),
        cwd=tmp_path,
    )
    expected = run_like_the_test_profile(
        DATA / "example.fa",
        tmp_path / "expected",
        test_models,
        *options,
        "--target-fdr",
        CALIBRATED_TARGET_FDR,
    )
    assert_same_outputs(tmp_path / "out" / "example", expected)
    # the calibration changed the calls
    assert (expected / "sequences.tsv").read_text() != (example_reference / "sequences.tsv").read_text()
    report = next(row for row in read_trace(tmp_path / "out") if row["process"] == "VIRNUCPRO:REPORT")
    script = next((tmp_path / "work").glob(f"{report['hash']}*/.command.sh")).read_text()
    assert "--calibration calibration/calibration.json" in script


@pytest.mark.nextflow
@pytest.mark.slow
def test_samplesheet_sample_of_several_files(tmp_path, example_reference):
    """Two files of one sample, read in the samplesheet's order, give one sample with both files'
    sequences and the reference's scores."""
    records = fasta_records(DATA / "example.fa")
    part1 = write_records(tmp_path / "part 1.fa", records[:4])
    part2 = write_records(tmp_path / "part2.fa", records[4:7])
    sheet = tmp_path / "samples.csv"
    sheet.write_text("sample,file\nboth,part2.fa\nboth,part 1.fa\n")
    run_pipeline("-profile", "test", "--input", sheet, "--outdir", "out", "--shard_size", "100", cwd=tmp_path)
    assert_scores_match(tmp_path / "out" / "both", example_reference, part2 + part1)
