"""What every embedding task asks for, under each container engine with and without GPUs, as the
real engine resolves the configuration: -stub-run on the local executor of a (declared) large host,
the container engines replaced by a stand-in that records how Nextflow called them and runs the
task on this machine. The SLURM side is checked against a real scheduler in test_slurm.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA
from nextflow_support import engine_calls, fake_container_engines, nextflow_env, read_trace, run_pipeline

pytestmark = pytest.mark.nextflow

IMAGE = "virnucpro-test:0"
GPU_OPTIONS = {
    "docker": "--gpus all -v {locks}:{locks}",
    "podman": "--device nvidia.com/gpu=all -v {locks}:{locks}",
    "singularity": "--nv -B {locks}",
    "apptainer": "--nv -B {locks}",
}
# A 64-core, 1 TB machine as far as the local executor knows, so requests are not refused for
# exceeding this one
LARGE_HOST = "executor {\n    cpus = 64\n    memory = '1 TB'\n}\n"


def run_with_fake_engine(tmp_path: Path, profiles: str, *options: str, kill_once: str = "") -> Path:
    (tmp_path / "large-host.config").write_text(LARGE_HOST)
    fakes = fake_container_engines(tmp_path / "engines", tmp_path / "engine.log", IMAGE, kill_once)
    env = nextflow_env()
    env["PATH"] = f"{fakes}:{env['PATH']}"
    run_pipeline(
        *("-profile", profiles, "-stub-run", "-c", tmp_path / "large-host.config"),
        *("--input", DATA / "example.fa", "--make_test_models", "--outdir", "out", "--container", IMAGE),
        *("--gpu_lock_dir", tmp_path / "locks", "--shards_per_task", "3"),
        *options,
        cwd=tmp_path,
        env=env,
    )
    return tmp_path


def has_gpu_options(arguments: str, locks: Path) -> bool:
    markers = ("--gpus", "nvidia.com/gpu", " --nv ", f"{locks}:{locks}", f"-B {locks}")
    return any(marker in f"{arguments} " for marker in markers)


def gigabytes(memory: str) -> float:
    number, unit = memory.split()
    return float(number) * {"MB": 1 / 1024, "GB": 1, "TB": 1024}[unit]


@pytest.mark.parametrize(
    ("profiles", "engine"),
    [
        ("gpu,docker", "docker"),
        ("gpu,podman", "podman"),
        ("gpu,singularity", "singularity"),
        ("apptainer,gpu", "apptainer"),
    ],
)
def test_gpu_tasks_get_their_resources_and_gpu_options_under_every_engine(tmp_path, profiles, engine):
    """--gpus 4 with the stub's 8 shards in groups of 3: EMBED tasks of 3, 3 and 2 GPUs (no more GPUs
    than shards), 4 CPUs and 24 GB per GPU, 24 h; the engine's GPU options and the GPU lock folder
    only on them. Other tasks: at least 1 CPU and 2 GB, no GPU options."""
    run_with_fake_engine(tmp_path, profiles, "--gpus", "4")
    trace = read_trace(tmp_path / "out")
    calls = engine_calls(tmp_path / "engine.log")
    gpu_options = GPU_OPTIONS[engine].format(locks=tmp_path / "locks")
    requested = {}
    for row in trace:
        assert row["status"] == "COMPLETED", row["name"]
        (used, arguments), *_ = calls[row["name"]]
        assert used == engine
        if row["process"] == "VIRNUCPRO:EMBED":
            requested[row["name"]] = (row["cpus"], row["memory"], row["time"])
            assert gpu_options in arguments, arguments
        else:
            assert int(row["cpus"]) >= 1 and gigabytes(row["memory"]) >= 2, row["name"]
            assert not has_gpu_options(arguments, tmp_path / "locks"), row["name"]
    assert requested == {
        "VIRNUCPRO:EMBED (example:1)": ("12", "72 GB", "1d"),
        "VIRNUCPRO:EMBED (example:2)": ("12", "72 GB", "1d"),
        "VIRNUCPRO:EMBED (example:3)": ("8", "48 GB", "1d"),
    }


@pytest.mark.parametrize(("profiles", "engine"), [("docker", "docker"), ("singularity,gpu", "singularity")])
def test_no_gpu_options_without_gpus(tmp_path, profiles, engine):
    """--gpus 0 (the gpu profile's 1 overridden): CPU embedding, --cpu_workers CPUs and 16 GB per
    worker, and no GPU option for any task."""
    run_with_fake_engine(tmp_path, profiles, "--gpus", "0", "--cpu_workers", "3")
    trace = read_trace(tmp_path / "out")
    calls = engine_calls(tmp_path / "engine.log")
    for row in trace:
        (used, arguments), *_ = calls[row["name"]]
        assert used == engine
        assert not has_gpu_options(arguments, tmp_path / "locks"), row["name"]
        if row["process"] == "VIRNUCPRO:EMBED":
            assert (row["cpus"], row["memory"]) == ("3", "48 GB"), row["name"]


def test_a_task_killed_for_memory_is_retried_with_more_memory_up_to_the_cap(tmp_path):
    """VIRNUCPRO:EMBED (example:1), 2 GPUs, is killed once (exit 137): its second attempt asks for twice the
    memory and time, capped by --max_memory, with the same CPUs and GPUs."""
    run_with_fake_engine(
        tmp_path,
        "gpu,docker",
        *("--gpus", "2", "--max_memory", "80.GB"),
        kill_once="VIRNUCPRO:EMBED (example:1)",
    )
    attempts = [
        (row["attempt"], row["status"], row["cpus"], row["memory"], row["time"])
        for row in read_trace(tmp_path / "out")
        if row["name"] == "VIRNUCPRO:EMBED (example:1)"
    ]
    assert sorted(attempts) == [("1", "FAILED", "8", "48 GB", "1d"), ("2", "COMPLETED", "8", "80 GB", "2d")]
    runs = engine_calls(tmp_path / "engine.log")["VIRNUCPRO:EMBED (example:1)"]
    assert len(runs) == 2 and all("--gpus all" in arguments for _, arguments in runs)
