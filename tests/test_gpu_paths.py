"""The GPU-only paths, on a CUDA device (skipped elsewhere): DNABERT-S FlexAttention compiled
against the CPU reference, mixed bf16 and fp8 against fp32, pinned-memory staging, and no CUDA
context in the parent before workers start. `bench/device_check.sh` runs these on a lent GPU."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import cli_env
from virnucpro.embedding.agreement import min_cosine
from virnucpro.embedding.engine import embed_sequences, load_embedder
from virnucpro.test_models import make_esm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
]


def dna(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACGT") for _ in range(rng.randint(300, 501))) for _ in range(count)]


def proteins(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(50, 166))) for _ in range(count)
    ]


@pytest.fixture(autouse=True)
def exact_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def test_compiled_flex_attention_matches_the_cpu_reference(test_models):
    data = dna(96, 1)
    cpu = embed_sequences(load_embedder("dnabert", test_models / "dnabert-s"), data)
    gpu = load_embedder("dnabert", test_models / "dnabert-s", device="cuda")
    assert gpu.attention_kernel.startswith("flex_attention (compiled")
    np.testing.assert_allclose(embed_sequences(gpu, data), cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["dnabert", "esm"])
def test_mixed_bf16_on_gpu_agrees_with_fp32(test_models, kind):
    folder = test_models / ("dnabert-s" if kind == "dnabert" else "esm2")
    data = dna(96, 2) if kind == "dnabert" else proteins(96, 2)
    reference = embed_sequences(load_embedder(kind, folder), data)
    mixed = embed_sequences(load_embedder(kind, folder, device="cuda", precision="bf16"), data)
    assert not np.array_equal(mixed, reference)
    assert min_cosine(reference, mixed) >= 0.999


def test_fp8_esm_on_hopper_agrees_with_fp32(tmp_path):
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("fp8 needs compute capability 9.0 or newer")
    make_esm(tmp_path / "esm", hidden_size=64, num_attention_heads=4, intermediate_size=128)  # widths of 16s
    data = proteins(64, 3)
    reference = embed_sequences(load_embedder("esm", tmp_path / "esm"), data)
    fp8 = embed_sequences(load_embedder("esm", tmp_path / "esm", device="cuda", precision="fp8"), data)
    assert min_cosine(reference, fp8) >= 0.99


def test_the_parent_creates_no_cuda_context_before_the_workers():
    """Resolving devices and checking fp8 support (in a spawned probe) leave CUDA uninitialised in
    the parent process, so no context of it holds device memory beside the workers'."""
    code = "\n".join(
        [
            "import torch",
            "from virnucpro.embedding.devices import check_precision, resolve_devices",
            "names = resolve_devices('cuda', 1)",
            "try:",
            "    check_precision('fp8', names)",
            "except Exception:",
            "    pass",
            "print(torch.cuda.is_initialized())",
        ]
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env())
    assert result.stdout.strip() == "False", result.stderr
