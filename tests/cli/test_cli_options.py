"""Options that several commands share are defined once: same names, default, bounds and help in
every command; the existing option names keep working; misuse is one line, not a usage box."""

from __future__ import annotations

import json
import re

import pytest
import typer.main

from conftest import REPO, run_cli
from virnucpro.cli import app
from virnucpro.defaults import (
    CHUNK_SIZES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
    EMBEDDING_DTYPES,
    MAX_COUNT,
    PRECISIONS,
)

COMMANDS = typer.main.get_command(app).commands
SHARED = (
    "--quiet",
    "--workers",
    "--devices",
    "--precision",
    "--batch-size",
    "--tokens-per-batch",
    "--threads-per-worker",
    "--chunk-size",
    "--shard-size",
    "--min-viral-fraction",
    "--dnabert-model",
    "--esm-model",
    "--dnabert-revision",
    "--esm-revision",
    "--classifier-revision",
)


def describe(param) -> tuple:
    """What must agree between commands: names, default, bounds, help."""
    return (
        tuple(sorted(param.opts)),
        param.default,
        *(fact(param, name) for name in ("min", "max")),
        param.help,
    )


def fact(param, name: str):
    """An attribute of the option, or (older typer, click's types) of its type."""
    value = getattr(param, name, None)
    return value if value is not None else getattr(getattr(param, "type", None), name, None)


def options_by_name() -> dict[str, dict[str, tuple]]:
    found: dict[str, dict[str, tuple]] = {}
    for command_name, command in COMMANDS.items():
        for param in command.params:
            for opt in param.opts:
                if opt in SHARED:
                    found.setdefault(opt, {})[command_name] = describe(param)
    return found


def test_shared_options_agree_between_commands():
    found = options_by_name()
    for opt, per_command in found.items():
        variants = set(per_command.values())
        assert len(variants) == 1, f"{opt} differs between commands: {per_command}"
    for opt in ("--workers", "--devices", "--precision", "--threads-per-worker", "--quiet"):
        assert {"run", "embed-dna", "embed-protein"} <= set(found[opt]), opt
    assert {"run", "embed-dna"} <= set(found["--batch-size"])
    assert {"run", "embed-protein"} <= set(found["--tokens-per-batch"])
    run = {opt: found[opt]["run"] for opt in found if "run" in found[opt]}
    assert run["--workers"][1] == DEFAULT_WORKERS and run["--batch-size"][1] == DEFAULT_BATCH_SIZE
    assert run["--tokens-per-batch"][1] == DEFAULT_TOKENS_PER_BATCH
    assert run["--threads-per-worker"][1] == DEFAULT_THREADS_PER_WORKER


def test_each_shared_option_is_declared_once_in_the_source():
    sources = "\n".join(p.read_text() for p in (REPO / "python" / "virnucpro" / "cli").glob("*.py"))
    for opt in SHARED:
        declarations = re.findall(rf"typer\.Option\(\s*(?:\"-[^\"]*\",\s*)*\"{re.escape(opt)}\"", sources)
        assert len(declarations) == 1, f"{opt} is declared {len(declarations)} times"


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("embed-dna", ["--model", "--revision", "--batch-size"]),
        ("embed-protein", ["--model", "--revision", "--tokens-per-batch"]),
        ("run", ["--dnabert-model", "--esm-model", "--classifier", "--threads-per-worker", "--force"]),
        ("report", ["--input", "--prepared", "--scores", "--min-viral-fraction"]),
    ],
)
def test_option_names_keep_working(command, names):
    opts = {opt for param in COMMANDS[command].params for opt in param.opts}
    assert set(names) <= opts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "x.fa", "-o", "out", "--workers", "0"], "'--workers'"),
        (["run", "x.fa", "-o", "out", "--chunk-size", "400"], "'--chunk-size': 400 is not one of 300 or 500"),
        (["run", "x.fa", "-o", "out", "--precision", "fp9"], "'--precision': 'fp9' is not one of"),
        (["embed-dna", "x.fa", "-o", "out", "--precision", "int4"], "'--precision': 'int4'"),
        (["run", "x.fa", "-o", "out", "--min-viral-fraction", "2"], "'--min-viral-fraction'"),
        (["run", "x.fa", "-o", "out", "--no-such-option"], "--no-such-option"),
        (["run", "-o", "out"], "Missing argument"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("virnucpro: error: "), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


# --- The Nextflow pipeline's parameters (nextflow_schema.json) against the CLI ---------------------

# Choices the CLI enforces in a callback from these tuples (not a click Choice).
CHOICES = {"--chunk-size": CHUNK_SIZES, "--precision": PRECISIONS, "--embedding-dtype": EMBEDDING_DTYPES}
# Pipeline parameters that are not a `virnucpro` option of the same name: Nextflow's own settings
# (where, how, what to publish, resources), or CLI options under another name (`gpus` and
# `cpu_workers` become `--devices`/`--workers` per task, `publish_embeddings` is an alias of
# `keep_embeddings`), a step of the pipeline alone (`skip_multiqc`), or a path whose CLI form is
# required (`input`, `outdir`).
NOT_CLI_OPTIONS = frozenset(
    {
        "input",
        "outdir",
        "publish_embeddings",
        "publish_dir_mode",
        "trace_report_suffix",
        "shards_per_task",
        "make_test_models",
        "gpus",
        "cpu_workers",
        "accelerator_type",
        "gpu_lock_dir",
        "container",
        "slurm_queue",
        "slurm_gpu_queue",
        "slurm_options",
        "max_retries",
        "max_cpus",
        "max_memory",
        "max_time",
        "skip_multiqc",
        "help",
    }
)
# Disagreements known when this test was written, in nextflow_schema.json (owned by the Nextflow
# side): `--target-fdr` refuses values outside (0, 1), the schema does not say so. Remove an entry
# when the schema is fixed (the test fails while a listed disagreement no longer exists).
KNOWN_DISAGREEMENTS = frozenset(
    {
        "target_fdr: schema minimum None, CLI --target-fdr 0.0",
        "target_fdr: schema maximum None, CLI --target-fdr 1.0",
    }
)
# The commands whose options the pipeline passes on (`embed` has the per-model batch options).
PIPELINE_COMMANDS = ("run", "embed", "report")


def schema_parameters() -> dict[str, dict]:
    schema = json.loads((REPO / "nextflow_schema.json").read_text(encoding="utf-8"))
    groups = schema.get("$defs") or schema.get("definitions") or {}
    return {name: spec for group in groups.values() for name, spec in group["properties"].items()}


def cli_option(name: str):
    opt = "--" + name.replace("_", "-")
    for command in PIPELINE_COMMANDS:
        for param in COMMANDS[command].params:
            if opt in param.opts:
                return param
    return None


def schema_disagreements() -> list[str]:
    problems = []
    for name, spec in sorted(schema_parameters().items()):
        param = None if name in NOT_CLI_OPTIONS else cli_option(name)
        if param is None:
            if name not in NOT_CLI_OPTIONS:
                problems.append(f"{name}: no `virnucpro {'/'.join(PIPELINE_COMMANDS)}` option --{name}")
            continue
        opt = "--" + name.replace("_", "-")
        cli = {"default": param.default, "minimum": fact(param, "min"), "maximum": fact(param, "max")}
        if opt in CHOICES:
            cli["enum"] = list(CHOICES[opt])
        for key, value in cli.items():
            declared = spec.get(key)
            if key == "default" and "default" not in spec:
                continue  # no default in the schema: Nextflow passes nothing and the CLI's applies
            if key == "maximum" and declared is None and value == MAX_COUNT:
                continue  # MAX_COUNT only refuses absurd counts; the schema need not repeat it
            if declared != value:
                problems.append(f"{name}: schema {key} {declared!r}, CLI {opt} {value!r}")
    return problems


def test_nextflow_schema_agrees_with_the_cli():
    """Each pipeline parameter that is a CLI option has the CLI's default, bounds and choices, so a
    value the schema accepts is one the command accepts, and leaving it out means the same."""
    problems = schema_disagreements()
    new = [problem for problem in problems if problem not in KNOWN_DISAGREEMENTS]
    assert not new, "nextflow_schema.json and the CLI disagree:\n" + "\n".join(new)
    fixed = KNOWN_DISAGREEMENTS - set(problems)
    assert not fixed, "fixed now, remove from KNOWN_DISAGREEMENTS:\n" + "\n".join(sorted(fixed))
