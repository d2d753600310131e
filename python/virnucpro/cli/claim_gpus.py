"""`virnucpro claim-gpus`: run a command on GPUs of this host that no concurrent task holds."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from virnucpro.cli.app import app
from virnucpro.embedding.gpu_slots import DEFAULT_LOCK_DIR, LOCK_DIR_ENV


@app.command("claim-gpus")
def claim_gpus_command(
    count: int = typer.Argument(..., min=1, help="GPUs to claim."),
    command: list[str] = typer.Argument(..., help="The command to run (after --), with its arguments."),
    lock_dir: Path = typer.Option(
        DEFAULT_LOCK_DIR,
        "--lock-dir",
        envvar=LOCK_DIR_ENV,
        help="Folder of the per-GPU lock files, shared by every task on the host.",
    ),
) -> None:
    """Wait until COUNT GPUs of this host are free, then run COMMAND with CUDA_VISIBLE_DEVICES set
    to them; exits with its status.

    GPUs are those of CUDA_VISIBLE_DEVICES when it is set, else every GPU the NVIDIA driver lists
    (VIRNUCPRO_SIMULATED_GPUS=N simulates N). A GPU stays claimed while COMMAND runs, and is freed
    however it ends, `kill -9` included (flock'ed lock files). The Nextflow pipeline runs its
    embedding commands through this on the local executor:

        virnucpro claim-gpus 2 -- virnucpro embed-dna shards/*.nucleotide.fa --outdir emb --devices cuda
    """
    from virnucpro.embedding.gpu_slots import run_with_gpus

    sys.exit(run_with_gpus(count, command, lock_dir))
