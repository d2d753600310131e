"""Docker for tests: Debian's docker.io and mmdebstrap installed with apt-get when missing, dockerd
started by hand when no daemon answers (and stopped afterwards), a Debian bookworm minbase made
without a registry as the base image, and the pipeline's image built from this checkout with
containers/Dockerfile."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from system_packages import apt_install

PACKAGES = ("docker.io", "mmdebstrap")
# python3, python3-venv, ca-certificates and procps: what containers/Dockerfile needs from a base
BASE_IMAGE = "virnucpro-test-base:bookworm-cc"
BASE_PACKAGES = "python3,python3-venv,python3-dev,gcc,g++,ca-certificates,procps"
# Certificates this machine trusts beyond Debian's (a TLS-inspecting proxy's, for instance): the
# image build reaches PyPI through the same network
EXTRA_CERTIFICATES = Path("/usr/local/share/ca-certificates")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class DockerUnavailable(Exception):
    """Docker cannot be installed or started here (the reason is the message)."""


def install_docker() -> None:
    """apt-get install docker.io and mmdebstrap unless dockerd and mmdebstrap are already there."""
    reason = apt_install(PACKAGES, ("docker", "dockerd", "mmdebstrap"))
    if reason:
        raise DockerUnavailable(reason)


def docker(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)


class DockerDaemon:
    """The machine's Docker daemon, started by hand (no flags) when none answers."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if docker("info", timeout=60).returncode == 0:
            return
        if os.geteuid() != 0:
            raise DockerUnavailable("no Docker daemon answers and starting one needs root")
        log = open(self.folder / "dockerd.log", "w")  # noqa: SIM115 (the daemon writes it until stop())
        self.process = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerUnavailable(
                    f"dockerd exited: {(self.folder / 'dockerd.log').read_text()[-2000:]}"
                )
            if docker("info", timeout=60).returncode == 0:
                return
            time.sleep(1)
        raise DockerUnavailable(
            f"dockerd did not answer: {(self.folder / 'dockerd.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        """Stop the daemon if this object started it (images stay in /var/lib/docker)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=60)


def make_base_image(folder: Path) -> float:
    """The Debian bookworm minbase base image, made once with mmdebstrap and `docker import` (no
    registry involved), with this machine's extra CA certificates; seconds it took (0 if there)."""
    if docker("image", "inspect", BASE_IMAGE, timeout=60).returncode == 0:
        return 0.0
    started = time.monotonic()
    hook = (
        f'for certificate in {EXTRA_CERTIFICATES}/*.crt; do [ -e "$certificate" ] || continue; '
        'cp "$certificate" "$1/usr/local/share/ca-certificates/"; done; chroot "$1" update-ca-certificates'
    )
    tarball = folder / "bookworm.tar"
    made = subprocess.run(
        [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            f"--customize-hook={hook}",
            "bookworm",
            tarball,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if made.returncode != 0:
        raise DockerUnavailable(f"mmdebstrap failed: {made.stderr.strip()[-1000:]}")
    imported = docker("import", str(tarball), BASE_IMAGE)
    tarball.unlink()
    if imported.returncode != 0:
        raise DockerUnavailable(f"docker import failed: {imported.stderr.strip()[-1000:]}")
    return time.monotonic() - started


def build_image(repo: Path, tag: str, log: Path) -> float:
    """`docker build` of containers/Dockerfile on the base image; seconds it took. A failed build
    fails the test (the Dockerfile is under test), with the end of the build log."""
    proxies = [f"--build-arg={name}={os.environ[name]}" for name in PROXY_VARIABLES if os.environ.get(name)]
    started = time.monotonic()
    with open(log, "w") as out:
        built = subprocess.run(
            [
                "docker",
                "build",
                "-f",
                "containers/Dockerfile",
                f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
                *proxies,
                "-t",
                tag,
                ".",
            ],
            cwd=repo,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if built.returncode != 0:
        raise AssertionError(f"docker build failed ({built.returncode}):\n{log.read_text()[-4000:]}")
    return time.monotonic() - started
