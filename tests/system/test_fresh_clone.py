"""A fresh clone as a new user gets it: `make venv`, then `nextflow run` with nothing but the
system's directories on PATH. bin/virnucpro, which Nextflow puts on the tasks' PATH, must find
the clone's .venv by itself, or say in one line what to do. The clone is of this checkout's
committed HEAD (what CI tests is a fresh clone too)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DATA, REPO
from nextflow_support import (
    assert_scores_match,
    fasta_records,
    read_trace,
    write_records,
)

SYSTEM_PATH = "/usr/bin:/bin"


def system_env(**extra: str) -> dict[str, str]:
    """Only the system's directories on PATH; no Python path, no virtual environment."""
    env = {
        "PATH": SYSTEM_PATH,
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "HF_HUB_OFFLINE": "1",
        "NXF_ANSI_LOG": "false",
        # the Nextflow runtime this checkout already resolved, rather than resolving it again
        "NXF_RUNTIME_DIR": str(REPO / ".nf-runtime"),
    }
    for name in (
        "PIP_CERT",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "HTTPS_PROXY",
        "https_proxy",
    ):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


def run_plainly(command: list, cwd: Path) -> subprocess.CompletedProcess:
    """COMMAND with only the system's directories on PATH, output captured."""
    return subprocess.run(command, cwd=cwd, env=system_env(), capture_output=True, text=True, timeout=1800)


def system_python_lacks_the_dependencies() -> bool:
    probe = subprocess.run(
        ["python3", "-c", "import typer, torch"], env=system_env(), capture_output=True, timeout=120
    )
    return probe.returncode != 0


def test_launcher_without_dependencies_or_venv_says_what_to_do(tmp_path):
    if not system_python_lacks_the_dependencies():
        pytest.skip("the system python3 has the dependencies: there is nothing to fall back from")
    (tmp_path / "checkout" / "bin").mkdir(parents=True)
    launcher = shutil.copy(REPO / "bin" / "virnucpro", tmp_path / "checkout" / "bin" / "virnucpro")
    result = subprocess.run(
        [launcher, "--version"], env=system_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 127
    assert result.stderr.splitlines() == [
        f"virnucpro: error: /usr/bin/python3 lacks the virnucpro dependencies and there is no "
        f"{tmp_path / 'checkout' / '.venv'}: run `make venv` in {tmp_path / 'checkout'}, or use -profile "
        "docker, podman, singularity, apptainer or conda"
    ]


@pytest.mark.slow
@pytest.mark.nextflow
@pytest.mark.xdist_group("fresh-clone")  # one clone and its 6 GB venv at a time under pytest-xdist
def test_a_fresh_clone_runs_after_make_venv_without_path_changes(tmp_path, example_reference):
    if not system_python_lacks_the_dependencies():
        pytest.skip("the system python3 has the dependencies: there is nothing to fall back from")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", REPO, clone], check=True, timeout=300)
    venv = run_plainly(["make", "venv", "PYTHON=python3"], cwd=clone)
    assert venv.returncode == 0, venv.stdout + venv.stderr

    records = fasta_records(DATA / "example.fa")[:4]
    ids = write_records(tmp_path / "x.fa", records)
    nextflow = clone / "scripts" / "nextflow"
    result = run_plainly(
        [nextflow, "run", clone, "-profile", "test", "--input", tmp_path / "x.fa", "--outdir", "out"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {row["status"] for row in read_trace(tmp_path / "out")} == {"COMPLETED"}
    assert_scores_match(tmp_path / "out" / "x", example_reference, ids)
