"""GPU claims on one host (`virnucpro claim-gpus`, python/virnucpro/embedding/gpu_slots.py), with a simulated
GPU count: real processes, real flock'ed lock files, kill -9 included; then through a real Nextflow
run whose concurrent embedding tasks must get disjoint GPUs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, cli_env
from nextflow_support import (
    assert_scores_match,
    fasta_records,
    nextflow_env,
    read_trace,
    run_pipeline,
)
from virnucpro.embedding.gpu_slots import host_gpus

CLAIM = re.compile(r"gpu-slots (\d+\.\d+): claimed GPUs ([\w,-]+) \((\d+) of (\d+)")
RELEASE = re.compile(r"gpu-slots (\d+\.\d+): released GPUs ([\w,-]+)")


def claim_env(folder: Path, gpus: int | None = None, **extra: str) -> dict[str, str]:
    env = cli_env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["VIRNUCPRO_GPU_LOCKS"] = str(folder / "locks")
    if gpus is not None:
        env["VIRNUCPRO_SIMULATED_GPUS"] = str(gpus)
    env.update(extra)
    return env


def start_claim(folder: Path, name: str, count: int, command: str, env: dict[str, str]) -> subprocess.Popen:
    """`virnucpro claim-gpus COUNT -- sh -c COMMAND` in the background; its stderr goes to
    folder/name.err. In COMMAND, $OUT is folder/name (for what the command records)."""
    err = open(folder / f"{name}.err", "w")  # noqa: SIM115 (closed when the process is reaped)
    return subprocess.Popen(
        [sys.executable, "-m", "virnucpro", "claim-gpus", str(count), "--", "sh", "-c", command],
        env={**env, "OUT": str(folder / name)},
        stderr=err,
        start_new_session=True,
    )


def claim_now(count: int, command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`virnucpro claim-gpus COUNT -- sh -c COMMAND`, waited for, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "virnucpro", "claim-gpus", str(count), "--", "sh", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(path: Path, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never said {text!r}: {path.read_text() if path.exists() else '(missing)'}")


def finish(process: subprocess.Popen) -> int:
    return process.wait(timeout=60)


def test_host_gpus_come_from_the_simulation_then_cuda_visible_devices():
    assert host_gpus({"VIRNUCPRO_SIMULATED_GPUS": "3", "CUDA_VISIBLE_DEVICES": "5"}) == (
        ["0", "1", "2"],
        "VIRNUCPRO_SIMULATED_GPUS=3",
    )
    assert host_gpus({"CUDA_VISIBLE_DEVICES": "2,GPU-ab12,7"})[0] == ["2", "GPU-ab12", "7"]
    assert host_gpus({"CUDA_VISIBLE_DEVICES": "3,-1,4"})[0] == ["3"]  # CUDA stops at -1
    assert host_gpus({"CUDA_VISIBLE_DEVICES": ""})[0] == []


def test_concurrent_claims_get_disjoint_gpus_and_a_claim_waits_for_free_ones(tmp_path):
    env = claim_env(tmp_path, gpus=4)
    # The first two hold 2 GPUs each until told to stop; the third needs 2 and must wait
    hold = f'echo "$CUDA_VISIBLE_DEVICES" > "$OUT"; while [ ! -e {tmp_path}/go ]; do sleep 0.05; done'
    first = start_claim(tmp_path, "first", 2, hold, env)
    wait_for(tmp_path / "first.err", "claimed GPUs")
    second = start_claim(tmp_path, "second", 2, hold, env)
    wait_for(tmp_path / "second.err", "claimed GPUs")
    third = start_claim(tmp_path, "third", 2, 'echo "$CUDA_VISIBLE_DEVICES" > "$OUT"', env)
    wait_for(tmp_path / "third.err", "waiting for 2 free GPU(s) of 4")
    assert not (tmp_path / "third").exists()  # it has not started

    (tmp_path / "go").touch()
    assert [finish(p) for p in (first, second, third)] == [0, 0, 0]
    held = [set((tmp_path / name).read_text().strip().split(",")) for name in ("first", "second", "third")]
    assert held[0] | held[1] == {"0", "1", "2", "3"}
    assert held[0].isdisjoint(held[1])
    assert len(held[2]) == 2
    released = float(RELEASE.search((tmp_path / "first.err").read_text()).group(1))
    released = min(released, float(RELEASE.search((tmp_path / "second.err").read_text()).group(1)))
    claimed = float(CLAIM.search((tmp_path / "third.err").read_text()).group(1))
    assert claimed >= released  # the third started only once GPUs were given back


def test_gpus_are_released_when_everything_is_killed(tmp_path):
    env = claim_env(tmp_path, gpus=2)
    holder = start_claim(tmp_path, "holder", 2, "sleep 600", env)
    wait_for(tmp_path / "holder.err", "claimed GPUs 0,1")
    os.killpg(holder.pid, signal.SIGKILL)  # the claim and its command, no chance to clean up
    holder.wait(timeout=60)

    after = claim_now(2, 'echo "$CUDA_VISIBLE_DEVICES"', env)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "0,1"
    assert "waiting" not in after.stderr


def test_the_command_keeps_its_gpus_when_only_the_claim_is_killed(tmp_path):
    env = claim_env(tmp_path, gpus=1)
    holder = start_claim(tmp_path, "holder", 1, f"echo $$ > {tmp_path}/pid; exec sleep 600", env)
    wait_for(tmp_path / "holder.err", "claimed GPUs 0")
    wait_for(tmp_path / "pid", "\n")
    holder.kill()  # kill -9 of `claim-gpus` alone: its command still runs on the GPU
    holder.wait(timeout=60)
    waiter = start_claim(tmp_path, "waiter", 1, 'echo "$CUDA_VISIBLE_DEVICES" > "$OUT"', env)
    wait_for(tmp_path / "waiter.err", "waiting for 1 free GPU(s) of 1")
    os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)
    assert finish(waiter) == 0
    assert (tmp_path / "waiter").read_text().strip() == "0"
    os.killpg(holder.pid, signal.SIGKILL) if _alive(holder.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_exit_status_and_stop_signals_reach_through(tmp_path):
    env = claim_env(tmp_path, gpus=1)
    failing = subprocess.run(
        [sys.executable, "-m", "virnucpro", "claim-gpus", "1", "--", "sh", "-c", "exit 3"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert failing.returncode == 3
    trapper = start_claim(
        tmp_path,
        "trapper",
        1,
        f"trap 'echo stopped > {tmp_path}/trapped; exit 42' TERM; sleep 600 & wait",
        env,
    )
    wait_for(tmp_path / "trapper.err", "claimed GPUs 0")
    time.sleep(0.5)  # let sh install its trap
    trapper.send_signal(signal.SIGTERM)  # as Nextflow or a scheduler stops a task
    assert finish(trapper) == 42
    assert (tmp_path / "trapped").read_text() == "stopped\n"
    if _alive(trapper.pid):
        os.killpg(trapper.pid, signal.SIGKILL)  # the orphaned `sleep`


def test_claims_use_cuda_visible_devices_as_the_pool(tmp_path):
    env = claim_env(tmp_path, CUDA_VISIBLE_DEVICES="3,5")
    result = claim_now(2, 'echo "$CUDA_VISIBLE_DEVICES"', env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3,5"
    assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == ["gpu-3.lock", "gpu-5.lock"]


@pytest.mark.parametrize(
    ("gpus", "count", "message"),
    [
        (
            "2",
            "3",
            "claim-gpus: 3 GPUs requested, but VIRNUCPRO_SIMULATED_GPUS=2 shows 2 (0,1); ask for at most 2",
        ),
        ("0", "1", "claim-gpus: 1 GPU(s) requested, but VIRNUCPRO_SIMULATED_GPUS=0 shows none; use --gpus 0"),
    ],
)
def test_impossible_claims_fail_in_one_line(tmp_path, gpus, count, message):
    result = subprocess.run(
        [sys.executable, "-m", "virnucpro", "claim-gpus", count, "--", "true"],
        env=claim_env(tmp_path, gpus=int(gpus)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"virnucpro: error: {message}")


def intervals(err: str) -> list[tuple[float, float, set[str]]]:
    """(claimed at, released at, GPUs) of every claim in a task's stderr."""
    claims = [(float(m.group(1)), m.group(2)) for m in CLAIM.finditer(err)]
    releases = [float(m.group(1)) for m in RELEASE.finditer(err)]
    assert len(claims) == len(releases), err
    return [(start, end, set(gpus.split(","))) for (start, gpus), end in zip(claims, releases, strict=True)]


@pytest.mark.slow
@pytest.mark.nextflow
def test_concurrent_embedding_tasks_get_disjoint_gpus(tmp_path, example_reference):
    """The test profile with --gpus 2 on a host simulated with 2 GPUs (embedding itself on the CPU):
    5 shards in groups of 2 give EMBED tasks of 2, 2 and 1 GPUs (never more than their shards), two
    run at a time on two cores, and no two of them ever hold the same GPU."""
    config = tmp_path / "embed-on-cpu.config"
    config.write_text("process {\n    withName: 'EMBED' {\n        ext.devices = 'cpu'\n    }\n}\n")
    env = nextflow_env(VIRNUCPRO_SIMULATED_GPUS="2")
    run_pipeline(
        *("-profile", "test", "-c", config, "--outdir", "out", "--shard_size", "6"),
        *("--gpus", "2", "--gpu_lock_dir", tmp_path / "locks"),
        cwd=tmp_path,
        env=env,
    )
    trace = read_trace(tmp_path / "out")
    embeds = {row["name"]: row for row in trace if row["process"] == "VIRNUCPRO:EMBED"}
    assert sorted(embeds) == [
        "VIRNUCPRO:EMBED (example:1)",
        "VIRNUCPRO:EMBED (example:2)",
        "VIRNUCPRO:EMBED (example:3)",
    ]
    claims = {}
    for name, row in embeds.items():
        folder = next((tmp_path / "work").glob(f"{row['hash']}*"))
        script = (folder / ".command.sh").read_text()
        assert "virnucpro claim-gpus" in script and "--devices cpu" in script
        claims[name] = intervals((folder / ".command.err").read_text())
        assert len(claims[name]) == 1  # one `virnucpro embed` per task
    assert {len(gpus) for _, _, gpus in claims["VIRNUCPRO:EMBED (example:3)"]} == {1}  # one shard, one GPU
    assert {
        len(gpus)
        for _, _, gpus in claims["VIRNUCPRO:EMBED (example:1)"] + claims["VIRNUCPRO:EMBED (example:2)"]
    } == {2}
    every = [(name, *claim) for name, task in claims.items() for claim in task]
    for i, (name, start, end, gpus) in enumerate(every):
        for other, other_start, other_end, other_gpus in every[i + 1 :]:
            if other != name and start < other_end and other_start < end:
                assert gpus.isdisjoint(other_gpus), f"{name} and {other} held {gpus & other_gpus} at once"
    # the embeddings are right too (other shard sizes move float32 scores in the last digits)
    records = fasta_records(DATA / "example.fa")
    assert_scores_match(tmp_path / "out" / "example", example_reference, [h.split()[0] for h, _ in records])
