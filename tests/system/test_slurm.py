"""The pipeline's slurm profile against a real scheduler: a single-node SLURM cluster started on
this machine (tests/helpers/nextflow_slurm.py) runs every task as a batch job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import DATA
from nextflow_slurm import SlurmCluster, SlurmUnavailable, install_slurm
from nextflow_support import (
    assert_same_outputs,
    nextflow_env,
    read_trace,
    run_pipeline,
)

# One worker holds the module's cluster (pytest-xdist --dist loadgroup)
pytestmark = [pytest.mark.nextflow, pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]


def quick_polling(folder: Path) -> Path:
    """A config that polls the scheduler every second: the profile's intervals suit a busy
    cluster, not a test of a few short jobs."""
    config = folder / "quick-polling.config"
    config.write_text("executor {\n    pollInterval = '1 sec'\n    queueStatInterval = '1 sec'\n}\n")
    return config


# The node declares 8 GPUs (a GRES without devices), 64 CPUs and 1 TB, more than this machine has:
# enough for every request of the checks below, none of which is enforced
NODE = {"gpus": 8, "cpus": 64, "memory_mb": 1024 * 1024}


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    try:
        install_slurm()
    except SlurmUnavailable as reason:
        pytest.skip(f"SLURM cannot be installed here: {reason}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), **NODE)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_slurm_profile_runs_every_task_as_a_job(slurm_cluster, tmp_path, request):
    reference = request.getfixturevalue("example_reference")
    launch = tmp_path / "launch"
    launch.mkdir()
    env = nextflow_env(SLURM_CONF=slurm_cluster.env["SLURM_CONF"])
    run_pipeline(
        "-profile", "test,slurm", "-c", quick_polling(tmp_path), "--outdir", "out", cwd=launch, env=env
    )

    trace = read_trace(launch / "out")
    jobs = slurm_cluster.completed_jobs()
    assert (
        len(trace) == 9
    )  # MAKE_TEST_MODELS, MODEL_IDENTITY x2, PREPARE, EMBED x2 (scored there too), REPORT, SUMMARY, MULTIQC
    for row in trace:
        assert row["status"] == "COMPLETED", row["name"]
        job = jobs.get(row["native_id"])
        assert job is not None, f"{row['name']}: job {row['native_id']} is not in SLURM's records"
        assert job["JobState"] == "COMPLETED"
        # SLURM job names have "_" for the ":" and spaces of task names (nf-VIRNUCPRO_EMBED_(...))
        assert job["Name"].startswith(f"nf-{row['process'].replace(':', '_')}_")
        # the job ran in the task's own folder, work/<hash>
        task_folder = Path(job["WorkDir"]).resolve().relative_to((launch / "work").resolve())
        assert task_folder.as_posix().startswith(row["hash"]), row["name"]
    assert_same_outputs(launch / "out" / "example", reference)


def test_slurm_profile_options_reach_sbatch(slurm_cluster, tmp_path):
    """Queue, extra options and the GPU request go into each job script (checked with -stub-run:
    the scheduler has no GPU to give)."""
    launch = tmp_path / "launch"
    launch.mkdir()
    env = nextflow_env(SLURM_CONF=slurm_cluster.env["SLURM_CONF"])
    run_pipeline(
        *("-profile", "test,slurm", "-c", quick_polling(tmp_path), "-stub-run", "--outdir", "out"),
        *("--slurm_queue", "debug"),
        "--slurm_options=--comment=virnucpro-test",
        cwd=launch,
        env=env,
    )
    trace = read_trace(launch / "out")
    for row in trace:
        script = next((launch / "work").glob(f"{row['hash']}*/.command.run")).read_text()
        assert "#SBATCH -p debug" in script, row["name"]
        assert "#SBATCH --comment=virnucpro-test" in script, row["name"]
        assert "--gres" not in script  # --gpus 0 in the test profile: CPU jobs
        assert slurm_cluster.completed_jobs()[row["native_id"]]["JobState"] == "COMPLETED"
    assert os.path.exists(launch / "out" / "example" / "report.html")


def test_slurm_records_the_resources_and_gpus_of_every_job(slurm_cluster, tmp_path):
    """Without the test profile's caps: what SLURM itself recorded for each job. The stub's 8 shards
    in one group with --gpus 8: one embedding job with 8 GPUs as a GRES, 32 CPUs, 192 GB and 24 h
    (the default --max_* caps leave 8 GPUs' request whole); every other job at least 1 CPU and
    2 GB, and no GPU. (-stub-run: the GPUs are declared, not real.)"""
    launch = tmp_path / "launch"
    launch.mkdir()
    env = nextflow_env(SLURM_CONF=slurm_cluster.env["SLURM_CONF"])
    run_pipeline(
        *("-profile", "slurm,gpu", "-c", quick_polling(tmp_path), "-stub-run", "--outdir", "out"),
        *("--input", DATA / "example.fa", "--make_test_models", "--gpus", "8", "--shards_per_task", "8"),
        cwd=launch,
        env=env,
    )
    trace = read_trace(launch / "out")
    jobs = slurm_cluster.completed_jobs()
    assert {row["process"] for row in trace} == {
        f"VIRNUCPRO:{process}"
        for process in (
            "MAKE_TEST_MODELS",
            "MODEL_IDENTITY",
            "PREPARE",
            "EMBED",
            "REPORT",
            "SUMMARY",
            "MULTIQC",
        )
    }
    for row in trace:
        job = jobs[row["native_id"]]
        assert job["JobState"] == "COMPLETED", row["name"]
        tres = dict(item.split("=", 1) for item in job["Tres"].split(","))
        gres = slurm_cluster.job(row["native_id"]).get("TresPerNode", "")
        if row["process"] == "VIRNUCPRO:EMBED":
            assert (tres["cpu"], tres["mem"], gres) == ("32", "192G", "gres:gpu:8"), job
            assert job["TimeLimit"] == "1440", job  # minutes
        else:
            assert int(tres["cpu"]) >= 1, job
            assert tres["mem"].endswith("G") and float(tres["mem"][:-1]) >= 2, job
            assert "gpu" not in gres, job
