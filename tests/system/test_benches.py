"""The CPU benchmarks run end to end on small inputs, so the commands docs/performance.md gives
keep working (bench/report.py once failed before its first report, unnoticed until a 10^7 run).
The figures are not asserted; what each prints is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from virnucpro.files.score_files import read_scores

pytestmark = pytest.mark.slow


def run_bench(*args: str, timeout: int = 900, **options) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, **options
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_report_bench_runs_and_compares_with_itself(tmp_path):
    result = run_bench(
        "bench/report.py", "--layout", "reads", "--chunks", "3000", "--workdir", str(tmp_path),
        "--compare-with", str(REPO / "python"),
    )  # fmt: skip
    lines = [line.split() for line in result.stdout.splitlines()]
    assert any(fields[:2] == ["3000", "3000"] for fields in lines), result.stdout
    assert "regions and tiers" in result.stdout


def test_scale_bench_with_bench_written_scores(tmp_path):
    """Two sizes, the larger one's scores written by the bench: the run takes every shard as
    scored (no embedding), and its report and no-op rerun are the run's own. Started with SIGINT
    ignored, as `nohup bench/scale.py ... &` starts it: the run it stops with SIGINT must stop
    anyway (it once went on embedding every shard of 10^6 reads)."""
    import signal

    figures = tmp_path / "figures.json"
    result = run_bench(
        "bench/scale.py", "--reads", "1000", "3000", "--bench-scores-from", "3000", "--no-shards",
        "--workdir", str(tmp_path / "work"), "--json", str(figures),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    small, large = json.loads(figures.read_text())["sizes"]
    assert (small["bench_scores"], large["bench_scores"]) == (False, True)
    assert small["stage_seconds"]["embed_and_score_s"] > 0
    assert large["stage_seconds"]["embed_and_score_s"] is None
    assert large["frames"] > small["frames"] > 0
    assert "scores written by the bench: no embedding" in result.stdout
    run = json.loads((tmp_path / "work" / "run-3000" / "run.json").read_text())
    assert run["counts"]["frames"] == large["frames"]
    # every shard was found scored: the files the run read are the bench's (its attention entry)
    scores = sorted((tmp_path / "work" / "run-3000" / "work" / "scores").glob("*.scores.parquet"))
    assert scores and {read_scores(path).metadata["dnabert.attention"] for path in scores} == {"bench"}
