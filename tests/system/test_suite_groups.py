"""The suite's own scheduling: under `make test` (pytest-xdist, --dist loadgroup) the tests of one
xdist_group run on one worker, which the Docker, SLURM and fresh-clone tests rely on (two workers
starting one machine's dockerd broke the image build). pytest 9.2 renamed the node attribute that
pytest-xdist 3.8 rewrites to mark a group, and the groups were silently split; requirements.lock
pins a pytest that keeps it."""

from __future__ import annotations

import os
import subprocess
import sys

GROUPED = """
import os
import time

import pytest

pytestmark = pytest.mark.xdist_group("one-daemon")


@pytest.mark.parametrize("index", range(4))
def test_grouped(index):
    time.sleep(0.3)
    with open(os.path.join(os.environ["GROUP_RECORD"], f"ran-{index}"), "w") as record:
        record.write(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("index", range(4))
def test_free(index):
    time.sleep(0.3)
"""


def test_a_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    base = tmp_path / "base"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
         "--basetemp", str(base), "test_grouped.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "GROUP_RECORD": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    workers = {path.read_text() for path in tmp_path.glob("ran-*")}
    assert len(list(tmp_path.glob("ran-*"))) == 4
    assert len(workers) == 1, workers
