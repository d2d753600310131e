"""GPU slots: embedding tasks that run side by side on one host get disjoint GPUs.

Nextflow's local executor does not hand GPUs out (24.10 ignores `accelerator` there), so every
concurrent embedding task would start a worker on every GPU. Before its command starts, a task
claims the GPUs it asked for: one lock file per GPU in a folder that every task of the host sees,
held with flock(2). A claimed GPU's lock is held by the command itself (the file descriptors are
inherited), so the kernel releases it when the last holder exits, even after `kill -9`; nothing
stale is ever left to clean up. The command then sees only its GPUs through CUDA_VISIBLE_DEVICES.

Which GPUs a host has: CUDA_VISIBLE_DEVICES when it is set (what a scheduler, or a Nextflow that
assigns accelerators itself, allows this task), else the driver's count (`nvidia-smi -L`, or
/proc/driver/nvidia/gpus). For tests, VIRNUCPRO_SIMULATED_GPUS=N stands for a host with N GPUs.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from virnucpro.errors import InputError, VirNucProError

LOCK_DIR_ENV = "VIRNUCPRO_GPU_LOCKS"
# /tmp is per host, as GPUs are: every pipeline on the host shares the slots. Containers see it
# through the mount that the container profiles add.
DEFAULT_LOCK_DIR = Path("/tmp/virnucpro-gpu-locks")
SIMULATED_ENV = "VIRNUCPRO_SIMULATED_GPUS"
# Signals a scheduler or Nextflow sends to stop a task: passed on to the command.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
NO_GPU_HINT = "use --gpus 0 to embed on the CPU"


def host_gpus(environ: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The GPU ids a task on this host may claim, and where that list came from."""
    environ = os.environ if environ is None else environ
    simulated = environ.get(SIMULATED_ENV, "").strip()
    if simulated:
        if not simulated.isdigit():
            raise InputError(f"{SIMULATED_ENV}={simulated!r}: give a whole number of GPUs")
        return [str(i) for i in range(int(simulated))], f"{SIMULATED_ENV}={simulated}"
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        # CUDA stops at the first invalid entry; -1 is the usual way to hide every GPU
        if "-1" in ids:
            ids = ids[: ids.index("-1")]
        return ids, f"CUDA_VISIBLE_DEVICES={visible}"
    return [str(i) for i in range(driver_gpu_count())], "the NVIDIA driver"


def driver_gpu_count() -> int:
    """GPUs the NVIDIA driver lists: `nvidia-smi -L`, else the entries of /proc/driver/nvidia/gpus."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        listing = None
    if listing is not None and listing.returncode == 0:
        return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    proc = Path("/proc/driver/nvidia/gpus")
    return len(list(proc.iterdir())) if proc.is_dir() else 0


def lock_dir(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


def _lock_name(gpu: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", gpu) + ".lock"


@dataclass
class Claim:
    """GPUs held through open, flock'ed lock files (released when every holder has closed them)."""

    gpus: list[str]
    descriptors: list[int] = field(repr=False)

    def release(self) -> None:
        for fd in self.descriptors:
            os.close(fd)
        self.descriptors = []


def _open_lock(folder: Path, gpu: str) -> int:
    path = folder / _lock_name(gpu)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        # Created by another user: a read-only descriptor takes the same flock
        return os.open(path, os.O_RDONLY)


def _prepare_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.stat().st_uid == os.getuid():
            # Shared by every user's tasks on the host, like /tmp itself
            folder.chmod(0o1777)
    except OSError as err:
        raise VirNucProError(
            f"{folder}: cannot create the GPU lock folder ({err.strerror}); set {LOCK_DIR_ENV} "
            "(the pipeline's --gpu_lock_dir) to a folder every task on this host can write"
        ) from None


def try_claim(count: int, pool: Sequence[str], folder: Path) -> Claim | None:
    """`count` free GPUs of `pool`, in pool order, or None (holding nothing) when fewer are free."""
    held: list[str] = []
    descriptors: list[int] = []
    for gpu in pool:
        fd = _open_lock(folder, gpu)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held.append(gpu)
        descriptors.append(fd)
        if len(held) == count:
            return Claim(held, descriptors)
    for fd in descriptors:
        os.close(fd)
    return None


def claim(count: int, folder: Path, pool: Sequence[str], source: str, poll_seconds: float = 1.0) -> Claim:
    """Wait until `count` GPUs of `pool` are free, then hold them. Nothing is held while waiting,
    so two tasks can never each hold part of what the other needs."""
    if count < 1:
        raise InputError(f"claim-gpus: the number of GPUs must be at least 1, got {count}")
    if not pool:
        raise VirNucProError(f"claim-gpus: {count} GPU(s) requested, but {source} shows none; {NO_GPU_HINT}")
    if count > len(pool):
        raise VirNucProError(
            f"claim-gpus: {count} GPUs requested, but {source} shows {len(pool)} "
            f"({','.join(pool)}); ask for at most {len(pool)} (--gpus) or {NO_GPU_HINT}"
        )
    _prepare_folder(folder)
    started = time.monotonic()
    next_note = started
    while True:
        held = try_claim(count, pool, folder)
        if held is not None:
            return held
        if time.monotonic() >= next_note:
            waited = time.monotonic() - started
            note(f"waiting for {count} free GPU(s) of {len(pool)} ({source}; waited {waited:.0f} s)")
            next_note += 60
        time.sleep(poll_seconds)


def note(message: str) -> None:
    """One line on stderr with the wall-clock time (tests compare the times of claims)."""
    print(f"gpu-slots {time.time():.3f}: {message}", file=sys.stderr, flush=True)


def run_with_gpus(count: int, command: Sequence[str], folder: Path | None = None) -> int:
    """Run `command` on `count` GPUs of this host that no other claimant holds; its exit status.

    The command inherits the lock descriptors, so the GPUs stay claimed as long as it (or this
    process) lives, whichever ends last, and are released by the kernel however both end."""
    folder = lock_dir() if folder is None else folder
    pool, source = host_gpus()
    held = claim(count, folder, pool, source)
    started = time.monotonic()
    note(f"claimed GPUs {','.join(held.gpus)} ({count} of {len(pool)}, {source})")
    environ = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(held.gpus))
    try:
        child = subprocess.Popen(list(command), env=environ, pass_fds=held.descriptors)
    except OSError as err:
        held.release()
        raise VirNucProError(f"claim-gpus: cannot run {command[0]!r} ({err.strerror})") from None
    previous = {
        sig: signal.signal(sig, lambda sig, _frame: child.send_signal(sig)) for sig in FORWARDED_SIGNALS
    }
    try:
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        held.release()
    note(f"released GPUs {','.join(held.gpus)} after {time.monotonic() - started:.1f} s")
    # A command killed by a signal reports it the way a shell does
    return 128 - status if status < 0 else status
