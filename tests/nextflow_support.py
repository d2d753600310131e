"""Running the real Nextflow engine from tests: the launcher of scripts/nextflow (bootstrapped from
Maven Central when no Nextflow is installed), the environment tasks need, and the trace file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import DATA, OUTPUTS, REPO, cli_env, run_cli

NEXTFLOW = REPO / "scripts" / "nextflow"
# The commands the pipeline calls besides `prepare`


def nextflow_env(**extra: str) -> dict[str, str]:
    """This checkout's package first on PYTHONPATH (tasks inherit it), this interpreter's bin/ first
    on PATH so `python3` in tasks has the dependencies, plain logs, nothing fetched."""
    env = cli_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["NXF_ANSI_LOG"] = "false"
    env["NXF_OFFLINE"] = "true"
    env["NXF_DISABLE_CHECK_LATEST"] = "true"
    # The JIT's quick tier and the serial collector halve the start-up of these short runs
    env["NXF_OPTS"] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    env.update(extra)
    return env


def run_nextflow(
    *args: str | os.PathLike, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`scripts/nextflow ARGS...` launched from `cwd` (its work/ and .nextflow/ go there)."""
    return subprocess.run(
        [str(NEXTFLOW), *map(str, args)],
        cwd=cwd,
        env=env or nextflow_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_pipeline(*args: str | os.PathLike, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """`nextflow run <this checkout> ARGS...`, failing the test with the log when it fails."""
    result = run_nextflow("run", REPO, *args, cwd=cwd, **kwargs)
    if result.returncode != 0:
        log = cwd / ".nextflow.log"
        tail = log.read_text()[-6000:] if log.exists() else ""
        raise AssertionError(
            f"nextflow run {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail}"
        )
    return result


def read_trace(outdir: Path) -> list[dict[str, str]]:
    """The rows of the run's execution trace (one per task)."""
    with open(outdir / "pipeline_info" / "execution_trace.txt", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def statuses(trace: list[dict[str, str]]) -> dict[str, str]:
    """Task name (e.g. 'EMBED_DNA (example:1)') -> status (COMPLETED, CACHED, ...)."""
    return {row["name"]: row["status"] for row in trace}


def published_files(folder: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under `folder`."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def final_outputs(run_outdir: Path) -> dict[str, bytes]:
    """What `virnucpro run` wrote at its --outdir's top level (its intermediates stay in work/)."""
    return {path.name: path.read_bytes() for path in sorted(run_outdir.iterdir()) if path.is_file()}


# The test profile's settings, given to `virnucpro run` for the reference outputs
TEST_PROFILE_OPTIONS = ("--chunk-size", "500", "--shard-size", "12", "--workers", "1")
# report's outputs that every sample folder holds, besides the figures
SAMPLE_FILES = tuple(name for name in OUTPUTS if not name.endswith(".png"))
_reference_runs: dict[Path, Path] = {}


def reference_run(folder: Path, models: Path) -> Path:
    """`virnucpro run` on the bundled example with the test models, once per session: the outputs
    that the pipeline's must equal."""
    if models not in _reference_runs:
        outdir = folder / "reference"
        # Models named as Nextflow stages them (by folder name): reports show the name given
        options = [
            *("--dnabert-model", "dnabert-s", "--esm-model", "esm2", "--classifier", "classifier"),
            *TEST_PROFILE_OPTIONS,
            "--quiet",
        ]
        run_cli("run", DATA / "example.fa", "--outdir", outdir, *options, check=True, cwd=models)
        _reference_runs[models] = outdir
    return _reference_runs[models]


def assert_same_outputs(sample_folder: Path, reference: Path) -> None:
    """Byte-identical to `virnucpro run`'s outputs, except run.json (timings, Nextflow's metadata)."""
    published = published_files(sample_folder)
    expected = final_outputs(reference)
    assert sorted(published) == sorted(expected)
    assert set(SAMPLE_FILES) <= set(published)
    for name, content in expected.items():
        if name != "run.json":
            assert published[name] == content, f"{name} differs from virnucpro run's"
    json.loads(published["run.json"])
