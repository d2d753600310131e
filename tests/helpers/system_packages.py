"""Debian packages that some tests need (SLURM, Docker), installed with apt-get when the tools are
missing: what `make test` does for itself on a fresh CI machine, where it runs as root."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def apt_install(packages: tuple[str, ...], tools: tuple[str, ...]) -> str | None:
    """Install `packages` unless every one of `tools` is on PATH already. Returns why that is not
    possible (not root, no apt-get, apt-get failed), or None when the tools are there."""
    if all(shutil.which(tool) for tool in tools):
        return None
    names = " and ".join(packages)
    if os.geteuid() != 0:
        return f"installing {names} needs root"
    if not shutil.which("apt-get"):
        return f"no apt-get to install {names}"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # One apt-get at a time across test workers (pytest-xdist): a second would fail on dpkg's lock.
    with open(Path(tempfile.gettempdir()) / "virnucpro-tests-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(shutil.which(tool) for tool in tools):  # another worker installed them meanwhile
            return None
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        ):
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
            if result.returncode != 0:
                return f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}"
    return None
