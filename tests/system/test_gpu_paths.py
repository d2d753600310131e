"""The GPU-only paths, on a CUDA device (skipped elsewhere): DNABERT-S FlexAttention compiled
against the CPU reference and its SDPA fallback, mixed bf16 and fp8 against fp32, ESM-2's speed
levers, and no CUDA context in the parent before workers start. `bench/gpu.py --gpu-tests` runs
these on a lent GPU (bench/device_check.sh)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import cli_env
from random_sequences import random_dna, random_proteins
from virnucpro.embedding.agreement import min_cosine
from virnucpro.embedding.engine import KernelChoice, embed_sequences, load_embedder
from virnucpro.models.tiny import make_dnabert, make_esm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
]


@pytest.fixture(autouse=True)
def exact_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(scope="module")
def wide_heads(tmp_path_factory):
    """DNABERT-S with heads of 16, the least compiled FlexAttention takes on CUDA (the test model's
    are 4 wide and fall back to SDPA, as test_kernels.py checks)."""
    folder = tmp_path_factory.mktemp("wide-heads") / "dnabert-s"
    make_dnabert(folder, hidden_size=64, num_attention_heads=4, intermediate_size=96)
    return folder


def test_compiled_flex_attention_matches_the_cpu_reference(wide_heads):
    data = random_dna(96, 1, 300, 501)
    cpu = embed_sequences(load_embedder("dnabert", wide_heads), data)
    gpu = load_embedder("dnabert", wide_heads, device="cuda")
    assert gpu.attention_kernel.startswith("flex_attention (compiled")
    np.testing.assert_allclose(embed_sequences(gpu, data), cpu, rtol=1e-4, atol=1e-5)


def test_narrow_heads_fall_back_to_sdpa_on_cuda_and_match(test_models):
    data = random_dna(32, 4, 300, 501)
    cpu = embed_sequences(load_embedder("dnabert", test_models / "dnabert-s"), data)
    gpu = load_embedder("dnabert", test_models / "dnabert-s", device="cuda")
    assert gpu.attention_kernel.startswith("sdpa")
    np.testing.assert_allclose(embed_sequences(gpu, data), cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_sdpa_with_the_dense_bias_runs_in_low_precision_on_cuda(test_models, precision):
    """The path of an image without a compiler: the memory-efficient kernel refused an fp32 mask with
    bf16 queries; attention now runs in float32."""
    data = random_dna(32, 5, 300, 501)
    reference = embed_sequences(load_embedder("dnabert", test_models / "dnabert-s"), data)
    kernels = KernelChoice(dnabert_attention="sdpa")
    got = embed_sequences(
        load_embedder(
            "dnabert", test_models / "dnabert-s", device="cuda", precision=precision, kernels=kernels
        ),
        data,
    )
    assert min_cosine(reference, got) >= 0.999


@pytest.mark.parametrize(
    "kernels",
    [
        KernelChoice(esm_fused_qkv=True),
        KernelChoice(compile_esm=True),
        KernelChoice(esm_fused_qkv=True, compile_esm=True),
    ],
)
def test_esm_speed_levers_on_gpu_agree_with_fp32(test_models, kernels):
    data = random_proteins(64, 6, 50, 166)
    reference = embed_sequences(load_embedder("esm", test_models / "esm2"), data)
    got = embed_sequences(
        load_embedder("esm", test_models / "esm2", device="cuda", precision="bf16", kernels=kernels), data
    )
    assert min_cosine(reference, got) >= 0.999


@pytest.mark.parametrize("kind", ["dnabert", "esm"])
def test_mixed_bf16_on_gpu_agrees_with_fp32(test_models, kind):
    folder = test_models / ("dnabert-s" if kind == "dnabert" else "esm2")
    data = random_dna(96, 2, 300, 501) if kind == "dnabert" else random_proteins(96, 2, 50, 166)
    reference = embed_sequences(load_embedder(kind, folder), data)
    mixed = embed_sequences(load_embedder(kind, folder, device="cuda", precision="bf16"), data)
    assert not np.array_equal(mixed, reference)
    assert min_cosine(reference, mixed) >= 0.999


def test_fp8_esm_on_hopper_agrees_with_fp32(tmp_path):
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("fp8 needs compute capability 9.0 or newer")
    make_esm(tmp_path / "esm", hidden_size=64, num_attention_heads=4, intermediate_size=128)  # widths of 16s
    data = random_proteins(64, 3, 50, 166)
    reference = embed_sequences(load_embedder("esm", tmp_path / "esm"), data)
    for kernels in (
        KernelChoice(),
        KernelChoice(compile_fp8_quantize=True),
        KernelChoice(esm_fused_qkv=True, compile_fp8_quantize=True),
        KernelChoice(esm_fused_qkv=True, compile_esm=True),
    ):
        embedder = load_embedder("esm", tmp_path / "esm", device="cuda", precision="fp8", kernels=kernels)
        assert min_cosine(reference, embed_sequences(embedder, data)) >= 0.99, embedder.attention_kernel


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
