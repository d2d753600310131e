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
A GPU listed twice is refused: its second lock would wait for the first forever.

The lock folder is shared by every claimant on the host, so nothing in it is trusted: the folder
must be a real folder (not a link) owned by this user or root, and writable by others only with the
sticky bit (as /tmp: no one can remove or replace another's lock files); lock files are opened
through the folder's descriptor without following a link or blocking on a FIFO, read-only (a lock
needs no write), and anything but a regular file of one link is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import signal
import stat
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
        seen: dict[str, str] = {}  # by lock file name: `a/b` and `a_b` would share one
        for gpu in ids:
            earlier = seen.get(_lock_name(gpu))
            if earlier is not None:
                also = f" (as {earlier} too)" if earlier != gpu else ""
                raise InputError(
                    f"CUDA_VISIBLE_DEVICES={visible}: GPU {gpu} is listed twice{also}; list each GPU once"
                )
            seen[_lock_name(gpu)] = gpu
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


def _open_lock(folder: int, path: Path, gpu: str) -> int:
    """The lock file of `gpu` in the folder open as `folder` (a descriptor), read-only."""
    name = _lock_name(gpu)
    hint = f"someone else made it: remove it, or set {LOCK_DIR_ENV} to a folder of your own"
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(name, flags, 0o644, dir_fd=folder)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # a link, a socket, a folder
            raise VirNucProError(f"{path / name}: a link or special file, not a lock file; {hint}") from None
        raise VirNucProError(f"{path / name}: cannot open the GPU lock file ({err.strerror})") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(descriptor)
        what = "a hard link" if stat.S_ISREG(status.st_mode) else "a FIFO or device"
        raise VirNucProError(f"{path / name}: {what}, not a lock file; {hint}")
    return descriptor


def _open_folder(folder: Path) -> int:
    """The lock folder, created if missing, opened without following a link, its owner and mode
    checked; its descriptor."""
    hint = f"set {LOCK_DIR_ENV} (the pipeline's --gpu_lock_dir) to a folder of your own"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        what = (
            "is a link or not a folder" if err.errno in (errno.ELOOP, errno.ENOTDIR) else f"({err.strerror})"
        )
        raise VirNucProError(f"{folder}: cannot use it as the GPU lock folder: it {what}; {hint}") from None
    status = os.fstat(descriptor)
    problem = None
    if status.st_uid == os.getuid() and stat.S_IMODE(status.st_mode) != 0o1777:
        with contextlib.suppress(OSError):
            # Shared by every user's tasks on the host, like /tmp itself
            os.fchmod(descriptor, 0o1777)
            status = os.fstat(descriptor)
    if status.st_uid not in (os.getuid(), 0):
        problem = f"it belongs to user id {status.st_uid}, who could replace the locks"
    elif status.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not status.st_mode & stat.S_ISVTX:
        problem = "others may write it, and without the sticky bit (chmod +t) they could replace the locks"
    if problem:
        os.close(descriptor)
        raise VirNucProError(
            f"{folder}: not a safe GPU lock folder: {problem}; {hint}, or have root make it with mode 1777"
        )
    return descriptor


def try_claim(count: int, pool: Sequence[str], folder: Path) -> Claim | None:
    """`count` free GPUs of `pool`, in pool order, or None (holding nothing) when fewer are free."""
    held: list[str] = []
    descriptors: list[int] = []
    directory = _open_folder(folder)
    try:
        for gpu in pool:
            fd = _open_lock(directory, folder, gpu)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append(gpu)
            descriptors.append(fd)
            if len(held) == count:
                return Claim(held, descriptors)
    except BaseException:
        for fd in descriptors:
            os.close(fd)
        raise
    finally:
        os.close(directory)
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
    os.close(_open_folder(folder))  # refused now, not after a wait
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
