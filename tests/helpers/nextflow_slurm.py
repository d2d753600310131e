"""A single-node SLURM cluster for tests: Debian's slurm-wlm and munge, installed with apt-get when
missing, daemons started by hand as root with a minimal slurm.conf in a temporary folder (ports
that are free at the time, so a SLURM already on the machine, or another test run's, is left
alone), stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from system_packages import apt_install

PACKAGES = ("slurm-wlm", "munge")


class SlurmUnavailable(Exception):
    """SLURM cannot be installed or started here (the reason is the message)."""


def install_slurm() -> None:
    """apt-get install slurm-wlm and munge unless their daemons are already there."""
    reason = apt_install(PACKAGES, ("slurmctld", "slurmd", "sbatch", "munged"))
    if reason:
        raise SlurmUnavailable(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise SlurmUnavailable("cannot read MemTotal from /proc/meminfo")


class SlurmCluster:
    """slurmctld + slurmd on this machine; `env` is what sbatch/squeue/Nextflow need (SLURM_CONF).

    `gpus` declares that many GPUs as a generic resource (gres/gpu) with no device behind them,
    and `cpus`/`memory_mb` let the node claim more than the machine has (config_overrides), so a
    job's GPU, CPU and memory requests can be checked here: nothing enforces them (task/none)."""

    def __init__(self, folder: Path, gpus: int = 0, cpus: int | None = None, memory_mb: int | None = None):
        self.folder = folder
        self.gpus = gpus
        self.cpus = cpus or os.cpu_count()
        self.memory_mb = memory_mb
        self.node = socket.gethostname().split(".")[0]
        self.conf = folder / "slurm.conf"
        self.jobcomp = folder / "jobcomp.txt"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self._started_munged = False

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting slurmd needs root")
        self._start_munge()
        for sub in ("ctld", "d", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        # Leave a little memory to the system so slurmd does not drain the node for it
        memory = self.memory_mb or int(_memory_mb() * 0.9)
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        if self.gpus:
            # A GPU GRES needs device files: empty files stand in for /dev/nvidia*
            devices = self.folder / "devices"
            devices.mkdir(exist_ok=True)
            for index in range(self.gpus):
                (devices / f"fake-gpu{index}").touch()
            (self.folder / "gres.conf").write_text(
                f"NodeName={self.node} Name=gpu File={devices}/fake-gpu[0-{self.gpus - 1}]\n"
            )
        self.conf.write_text(
            "\n".join(
                [
                    f"ClusterName=virnucpro{os.getpid()}",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CryptoType=crypto/munge",
                    "MpiDefault=none",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/filetxt",
                    f"JobCompLoc={self.jobcomp}",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU_Memory",
                    "SlurmdParameters=config_overrides",
                    "GresTypes=gpu",
                    "ReturnToService=2",
                    "MinJobAge=3600",
                    f"StateSaveLocation={self.folder / 'ctld'}",
                    f"SlurmdSpoolDir={self.folder / 'd'}",
                    f"SlurmctldPidFile={self.folder / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.folder / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.folder / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.folder / 'log' / 'slurmd.log'}",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory}{gres} State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self._run(["slurmctld", "-c"])
        self._run(["slurmd", "-N", self.node])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env
            ).stdout.strip()
            if state == "idle":
                if not self._running("slurmd.pid"):
                    raise SlurmUnavailable(f"slurmd is not running:\n{self.logs()}")
                return
            time.sleep(1)
        raise SlurmUnavailable(f"the node did not become idle (state '{state}'):\n{self.logs()}")

    def _running(self, pidfile: str) -> bool:
        path = self.folder / pidfile
        try:
            os.kill(int(path.read_text().split()[0]), 0)
        except (OSError, ValueError):
            return False
        return True

    def _start_munge(self) -> None:
        probe = subprocess.run("munge -n | unmunge", shell=True, capture_output=True)
        if probe.returncode == 0:
            return  # a munged is already serving this machine
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            self._run(["mungekey", "--create", "--force"])
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, "munge", "munge")
        self._run(["runuser", "-u", "munge", "--", "munged"])
        self._started_munged = True

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60)
        if result.returncode != 0:
            raise SlurmUnavailable(
                f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}"
            )

    def completed_jobs(self) -> dict[str, dict[str, str]]:
        """Job id -> fields of the job completion record (JobId, Name, JobState, NodeList, ...)."""
        jobs = {}
        if self.jobcomp.exists():
            for line in self.jobcomp.read_text().splitlines():
                fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
                if "JobId" in fields:
                    jobs[fields["JobId"]] = fields
        return jobs

    def job(self, job_id: str) -> dict[str, str]:
        """What the controller holds on a job (`scontrol show job`; finished jobs stay MinJobAge)."""
        shown = subprocess.run(
            ["scontrol", "show", "job", "--oneliner", job_id],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        return dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}"
            for path in sorted((self.folder / "log").glob("*.log"))
        )

    def stop(self) -> None:
        subprocess.run(["scontrol", "shutdown"], capture_output=True, env=self.env, timeout=60)
        for pidfile in (self.folder / "slurmd.pid", self.folder / "slurmctld.pid"):
            _wait_for_exit(pidfile)
        if self._started_munged:
            pidfile = Path("/run/munge/munged.pid")
            if pidfile.exists():
                os.kill(int(pidfile.read_text().split()[0]), 15)


def _wait_for_exit(pidfile: Path, seconds: float = 30) -> None:
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().split()[0])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(pid, 9)
