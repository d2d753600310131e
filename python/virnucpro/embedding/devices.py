"""Which devices the embedding workers run on, checked in the parent without creating a CUDA
context there (spawned workers create their own).

`--devices cuda` with no usable GPU fails with one line naming the likely cause: an empty
CUDA_VISIBLE_DEVICES, a CPU-only torch build, no /dev/nvidia* device nodes (no GPU, or a
container started without `--gpus`/`--nv`), or what torch itself said (a driver too old for its
CUDA, for instance). `--precision fp8` is refused up front on devices older than Hopper.
"""

from __future__ import annotations

import functools
import glob
import multiprocessing
import os
import warnings

from virnucpro.errors import InputError


@functools.lru_cache(maxsize=1)
def cuda_probe() -> tuple[int, str]:
    """`(number of visible GPUs, torch's warning text if it gave one)`. Queries the driver (no CUDA
    context is created); torch warns only on its first query, so the answer is kept."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    said = " ".join(
        str(w.message).strip() for w in caught if "CUDA" in str(w.message) or "driver" in str(w.message)
    )
    return count, said


def why_no_cuda() -> str:
    """The likely reason no GPU is usable here, most specific first."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return f"CUDA_VISIBLE_DEVICES is {visible.strip()!r}, which hides every GPU from this process"
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build of torch"
    if not glob.glob("/dev/nvidia[0-9]*"):
        return (
            "no /dev/nvidia* device nodes: this machine has no NVIDIA GPU, or the container was started "
            "without GPU access (docker run --gpus, apptainer/singularity --nv)"
        )
    _, said = cuda_probe()
    if said:
        return f"torch says: {' '.join(said.split())[:300]}"
    return "torch sees no usable GPU (the driver may be too old for this torch's CUDA, or the GPUs are busy or off)"


def resolve_devices(devices: str, workers: int) -> list[str]:
    """One torch device name per worker: `cpu` (`workers` of them), `cuda` (every visible GPU),
    `cuda:0,2` (those), or `auto` (every visible GPU, else `workers` CPU workers)."""
    spec = devices.strip().lower()
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if spec == "cpu":
        return ["cpu"] * workers
    if spec not in ("auto", "cuda") and not spec.startswith("cuda:"):
        raise InputError(f"--devices {devices}: use auto, cpu, cuda or cuda:I[,J...]")
    count, _ = cuda_probe()
    if spec == "auto":
        return [f"cuda:{i}" for i in range(count)] if count else ["cpu"] * workers
    if not count:
        raise InputError(f"--devices {devices}: no usable CUDA device: {why_no_cuda()}")
    if spec == "cuda":
        return [f"cuda:{i}" for i in range(count)]
    try:
        indices = [int(part) for part in spec.removeprefix("cuda:").split(",")]
    except ValueError:
        raise InputError(f"--devices {devices}: expected cuda:I[,J...] with GPU numbers") from None
    bad = [i for i in indices if not 0 <= i < count]
    if bad or len(set(indices)) != len(indices):
        raise InputError(f"--devices {devices}: {count} GPU(s) visible, numbered 0..{count - 1}, each once")
    return [f"cuda:{i}" for i in indices]


def device_capabilities(names: list[str]) -> list[tuple[str, tuple[int, int]]]:
    """`(GPU name, compute capability)` of each CUDA device (runs in a spawned child process, whose
    CUDA context ends with it)."""
    import torch

    return [
        (torch.cuda.get_device_name(torch.device(n)), torch.cuda.get_device_capability(torch.device(n)))
        for n in names
    ]


def check_precision(precision: str, device_names: list[str]) -> None:
    """Refuse `--precision fp8` where the devices cannot run it (before any worker starts)."""
    from virnucpro.defaults import FP8_MIN_COMPUTE_CAPABILITY as MIN_COMPUTE_CAPABILITY

    if precision != "fp8":
        return
    needs = f"a GPU of compute capability {MIN_COMPUTE_CAPABILITY[0]}.{MIN_COMPUTE_CAPABILITY[1]} or newer (Hopper)"
    if any(not name.startswith("cuda") for name in device_names):
        raise InputError(f"--precision fp8 needs {needs}; this run would embed on the CPU (use fp32 or bf16)")
    with multiprocessing.get_context("spawn").Pool(1) as probe:
        found = probe.apply(device_capabilities, (device_names,))
    for device, (gpu, capability) in zip(device_names, found, strict=True):
        if tuple(capability) < MIN_COMPUTE_CAPABILITY:
            raise InputError(
                f"--precision fp8 needs {needs}; {device} is {gpu} ({capability[0]}.{capability[1]}); use bf16"
            )
