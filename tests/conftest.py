"""Shared fixtures: paths to the bundled data and the read-only parity fixtures in ../shared, and
runners for the real `virnucpro` command (the code under test, not a mock): `run_cli` in this
process through the CLI's own entry point, `run_cli_process` in a subprocess where the process is
the point (signals, kill -9, the interpreter's own streams, an environment without a package)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from virnucpro.files.layout import FINAL_OUTPUTS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"
PARITY = SHARED / "parity"
# Every final output, as `virnucpro run` and `report` must write them.
OUTPUTS = FINAL_OUTPUTS


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("COLUMNS", "120")
    return env


def run_cli_process(*args: str | os.PathLike, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m virnucpro ARGS...` in a subprocess, capturing text output."""
    result = subprocess.run(
        [sys.executable, "-m", "virnucpro", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(),
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"virnucpro {args} failed ({result.returncode}):\n{result.stderr}")
    return result


@contextlib.contextmanager
def _process_state(cwd: str | os.PathLike | None) -> Iterator[None]:
    """What one command may change in this process, put back afterwards: the working folder,
    sys.argv, the handlers of the signals the CLI catches, and the `virnucpro` logger (whose
    handler a command binds to the sys.stderr of its own invocation)."""
    logger = logging.getLogger("virnucpro")
    saved_logger = (list(logger.handlers), logger.level, logger.propagate)
    saved_signals = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    logger.handlers.clear()
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        logger.handlers[:] = saved_logger[0]
        logger.setLevel(saved_logger[1])
        logger.propagate = saved_logger[2]


def run_cli(
    *args: str | os.PathLike,
    check: bool = False,
    cwd: str | os.PathLike | None = None,
    input: str | bytes | None = None,
    stdin=None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run `virnucpro ARGS...` in this process: the real entry point (`virnucpro.cli.main`, with its
    one-line errors and exit codes) under typer's CliRunner isolation (own stdin, stdout, stderr
    and the environment of `cli_env`), returning what `run_cli_process` returns. Given `stdin`
    (an open file: the command reads a real descriptor) it runs in a subprocess instead; `timeout`
    is accepted for the subprocess runner's sake and not enforced in this process."""
    from typer.testing import CliRunner

    from virnucpro.cli import main

    if stdin is not None:
        return run_cli_process(*args, check=check, cwd=cwd, stdin=stdin, timeout=timeout)
    del timeout
    argv = [str(arg) for arg in args]
    environment = {key: value for key, value in cli_env().items() if os.environ.get(key) != value}
    with _process_state(cwd), CliRunner().isolation(input=input, env=environment) as (stdout, stderr, _):
        sys.argv = ["virnucpro", *argv]
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    result = subprocess.CompletedProcess(["virnucpro", *argv], code, out, err)
    if check and code != 0:
        raise AssertionError(f"virnucpro {argv} failed ({code}):\n{err}")
    return result


def damage_a_data_page(path: Path, column: int = -1) -> None:
    """Flip a byte in the middle of a column chunk's data of one of our Parquet files (the last
    column by default: the vectors or the scores), leaving the footer whole."""
    import pyarrow.parquet as pq

    row_group = pq.read_metadata(path).row_group(0)
    chunk = row_group.column(column % row_group.num_columns)
    data = bytearray(path.read_bytes())
    data[chunk.data_page_offset + chunk.total_compressed_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture
def example_fasta() -> Path:
    return DATA / "example.fa"


def golden_or_skip() -> Path:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden fixtures not present at {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def example_reference(test_models, tmp_path_factory) -> Path:
    """`virnucpro run` on the bundled example with the test models and the test profile's settings,
    once per session: the outputs that the pipeline's must equal. In a session folder, not a test's
    (a passed test's folder is removed at once, see pyproject.toml)."""
    from nextflow_support import run_like_the_test_profile

    return made_once(
        tmp_path_factory,
        "example-reference0",
        lambda folder: run_like_the_test_profile(DATA / "example.fa", folder, test_models),
    )


@pytest.fixture(scope="session")
def inductor_cache(tmp_path_factory) -> Path:
    """One torch.compile cache for every in-process compilation of the session: inductor keeps the
    folder it first used, so a test's own folder (removed once it passes) would be gone for the next
    test's compilation."""
    folder = tmp_path_factory.mktemp("inductor")
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def test_models(tmp_path_factory) -> Path:
    """The small random models of `virnucpro make-test-models`, built once per test session."""
    from virnucpro.stages.make_test_models import make_test_models

    return made_once(tmp_path_factory, "test-models0", make_test_models)


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make) -> Path:
    """The folder `name` that `make(folder)` fills, made once per test run: under pytest-xdist in
    the folder that all workers' temporary folders share, by whichever worker comes first while the
    others wait on a lock; the tests only read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / f"{name}.done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (root / f"{name}.done").touch()
    return folder


# ---------------------------------------------------------------------------------------------
# The fast tier stays fast: a test without one of these markers whose body (the call phase, not
# its fixtures) runs longer than the limit fails, naming the marker to add. Measured on the 2-core
# machine with two xdist workers and a load of about 5 (a benchmark beside it): the slowest unmarked
# tests took 19-24 s (a Hypothesis search over calibration files, `virnucpro run` on the long-coding
# reference, a torch.compile fallback in a fresh process); on the quiet machine 11 s at most.
# 30 s keeps those from failing on a loaded CI machine, while the tests of the slow kind (worker
# pools, kill -9 and resume, Nextflow: 30 to 180 s under the same load) cannot pass unmarked.
SLOW_MARKERS = ("slow", "nextflow", "docker", "slurm", "browser", "gpu")
FAST_TEST_LIMIT_S = float(os.environ.get("VIRNUCPRO_FAST_TEST_LIMIT_S", "30"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if (
        call.when == "call"
        and report.passed
        and call.duration > FAST_TEST_LIMIT_S
        and not any(item.get_closest_marker(name) for name in SLOW_MARKERS)
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} took {call.duration:.1f} s, more than the fast tier's {FAST_TEST_LIMIT_S:g} s "
            "(tests/conftest.py FAST_TEST_LIMIT_S): make it faster, or mark it @pytest.mark.slow "
            "(or nextflow, docker, slurm, browser, gpu: what it needs)"
        )
