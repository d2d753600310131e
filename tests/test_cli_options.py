"""Options that several commands share are defined once: same names, default, bounds and help in
every command; the existing option names keep working; misuse is one line, not a usage box."""

from __future__ import annotations

import re

import pytest
import typer.main

from conftest import REPO, run_cli
from virnucpro.cli import app
from virnucpro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_THREADS_PER_WORKER,
    DEFAULT_TOKENS_PER_BATCH,
    DEFAULT_WORKERS,
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
