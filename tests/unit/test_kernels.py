"""The kernel choices of the embedding engine, on CPU: every SDPA call gets a mask it can take, the
DNABERT-S attention choice falls back to SDPA (saying why) where compiled FlexAttention cannot run,
and ESM-2's speed levers (fused QKV, compiled layers, compiled fp8 quantization) agree with the
reference path."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from conftest import cli_env
from random_sequences import random_dna, random_proteins
from virnucpro.embedding.agreement import min_cosine
from virnucpro.embedding.engine import (
    MIN_FLEX_HEAD_DIM,
    KernelChoice,
    choose_dnabert_attention,
    embed_sequences,
    load_embedder,
)
from virnucpro.embedding.fp8 import Fp8Linear, compiled_quantize_rows, quantize_rows
from virnucpro.models.tiny import make_dnabert, make_esm
from virnucpro.progress import log

BATCHED = {"rtol": 1e-4, "atol": 1e-6}


class SdpaCalls(TorchFunctionMode):
    """Records (query dtype, mask dtype or None) of every scaled_dot_product_attention call."""

    def __init__(self):
        super().__init__()
        self.calls: set[tuple[torch.dtype, torch.dtype | None]] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            self.calls.add((args[0].dtype, None if mask is None else mask.dtype))
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def wide_heads(tmp_path_factory):
    """Test models whose heads are as wide as compiled FlexAttention needs (16) and whose ESM-2
    widths suit fp8's tensor cores (multiples of 16)."""
    folder = tmp_path_factory.mktemp("wide-heads")
    make_dnabert(folder / "dnabert-s", hidden_size=16 * 4, num_attention_heads=4, intermediate_size=96)
    make_esm(folder / "esm2", hidden_size=64, num_attention_heads=4, intermediate_size=128)
    return folder


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-cast", "fp16"])
@pytest.mark.parametrize(
    ("kind", "kernels"),
    [("dnabert", KernelChoice()), ("esm", KernelChoice()), ("esm", KernelChoice(esm_fused_qkv=True))],
)
def test_every_sdpa_call_gets_a_mask_of_the_query_dtype_or_a_boolean_one(
    test_models, kind, kernels, precision
):
    # On CUDA a floating mask of another dtype than the query is refused by the memory-efficient
    # kernel ("invalid dtype for bias"); the CPU kernels accept it, so the calls are inspected.
    folder = test_models / ("dnabert-s" if kind == "dnabert" else "esm2")
    data = random_dna(6, 1) if kind == "dnabert" else random_proteins(6, 1)
    embedder = load_embedder(kind, folder, precision=precision, kernels=kernels)
    recorder = SdpaCalls()
    with recorder:
        embed_sequences(embedder, data)
    assert recorder.calls
    for query, mask in recorder.calls:
        assert mask in (None, torch.bool, query), (query, mask)


def test_bf16_dnabert_keeps_its_alibi_attention_in_float32(test_models):
    """The SDPA path computes attention in float32 for bf16 inputs, so its vectors stay as close to
    fp32 as the matmuls allow."""
    data = random_dna(24, 2)
    reference = embed_sequences(load_embedder("dnabert", test_models / "dnabert-s"), data)
    mixed = embed_sequences(load_embedder("dnabert", test_models / "dnabert-s", precision="bf16"), data)
    assert min_cosine(reference, mixed) >= 0.999


def test_the_choice_takes_compiled_flex_on_cuda_and_the_reference_on_cpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert choose_dnabert_attention(64, cpu, KernelChoice()).attention == "sdpa"
    wanted = choose_dnabert_attention(64, cuda, KernelChoice())
    assert wanted.fallback_reason or (wanted.attention, wanted.compiled) == ("flex", True)
    flex = choose_dnabert_attention(4, cpu, KernelChoice(dnabert_attention="flex"))
    assert (flex.attention, flex.compiled, flex.fallback_reason) == ("flex", False, None)
    small = choose_dnabert_attention(MIN_FLEX_HEAD_DIM - 1, cuda, KernelChoice())
    assert small.attention == "sdpa" and "head dimension 15 is under 16" in small.fallback_reason


def test_heads_too_narrow_for_compiled_flex_fall_back_to_sdpa_with_one_line(test_models, caplog):
    # The test DNABERT-S has heads of 48 / 12 = 4: inductor would fail on CUDA with "NYI".
    wanted = KernelChoice(dnabert_attention="flex", compile_dnabert=True)
    with caplog.at_level(logging.WARNING, logger=log.name):
        embedder = load_embedder("dnabert", test_models / "dnabert-s", kernels=wanted)
    assert embedder.attention_kernel.startswith("sdpa")
    (line,) = [r.getMessage() for r in caplog.records if "DNABERT-S attention" in r.getMessage()]
    assert "head dimension 4 is under 16" in line
    reference = load_embedder("dnabert", test_models / "dnabert-s")
    data = random_dna(8, 3)
    np.testing.assert_array_equal(embed_sequences(embedder, data), embed_sequences(reference, data))


def flex_in_a_fresh_process(folder, env: dict[str, str]) -> tuple[str, bool, str]:
    """Compiled FlexAttention wanted for DNABERT-S in `folder`, in a new Python process (as a worker
    is: inductor's compiler choice and caches are per process): (the kernel taken, whether its
    vectors agree with the reference path's within 1e-4, stderr)."""
    code = "\n".join(
        [
            "import numpy as np",
            "from virnucpro.embedding.engine import KernelChoice, embed_sequences, load_embedder",
            "from virnucpro.progress import configure_logging",
            "configure_logging(quiet=False)",
            f"folder = {str(folder)!r}",
            "wanted = KernelChoice(dnabert_attention='flex', compile_dnabert=True)",
            "embedder = load_embedder('dnabert', folder, kernels=wanted)",
            "data = ['ACGTTGCA' * 20, 'GGGCCCAAT' * 7, 'ATTGC' * 31]",
            "got, reference = embed_sequences(embedder, data), embed_sequences(load_embedder('dnabert', folder), data)",
            "print(embedder.attention_kernel.split()[0], np.allclose(got, reference, rtol=1e-4, atol=1e-5))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**cli_env(), **env}, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kernel, close = result.stdout.split()[-2:]
    return kernel, close == "True", result.stderr


def test_a_compilation_that_fails_falls_back_to_sdpa_with_one_line(wide_heads, tmp_path):
    """A real inductor failure (no working C++ compiler), through the real choice: SDPA takes over
    and the vectors are the reference path's."""
    env = {"CXX": "/bin/false", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    kernel, close, stderr = flex_in_a_fresh_process(wide_heads / "dnabert-s", env)
    assert kernel == "sdpa" and close
    lines = [line for line in stderr.splitlines() if "DNABERT-S attention" in line]
    assert len(lines) == 1 and "compilation failed" in lines[0] and "Traceback" not in stderr


def test_no_compiler_means_sdpa_before_any_compilation(wide_heads, tmp_path):
    env = {**cli_env(), "CXX": "", "PATH": str(tmp_path)}  # no g++, c++ or clang++ to be found
    code = (
        "import torch; from virnucpro.embedding.engine import KernelChoice, choose_dnabert_attention as c; "
        "print(c(16, torch.device('cpu'), KernelChoice(dnabert_attention='flex', compile_dnabert=True)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "attention='sdpa'" in result.stdout and "needs a C++ compiler" in result.stdout, result.stderr


@pytest.mark.slow
def test_compiled_flex_on_cpu_matches_the_reference(wide_heads, tmp_path):
    """The compiled kernel itself, built by inductor for the CPU (the GPU run is in test_gpu_paths).
    In a process of its own: in the suite's process, compilations of earlier tests made it fall back."""
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    kernel, close, stderr = flex_in_a_fresh_process(wide_heads / "dnabert-s", env)
    assert kernel == "flex_attention" and close, stderr[-3000:]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fused_qkv_agrees_with_transformers_attention(test_models, precision):
    data = random_proteins(40, 5)
    reference = embed_sequences(load_embedder("esm", test_models / "esm2", precision=precision), data)
    fused = load_embedder(
        "esm", test_models / "esm2", precision=precision, kernels=KernelChoice(esm_fused_qkv=True)
    )
    assert fused.attention_kernel == "sdpa (fused QKV)"
    layer = fused.model.encoder.layer[0].attention.self
    assert not hasattr(layer, "query") and layer.qkv.out_features == 3 * fused.dim
    got = embed_sequences(fused, data)
    np.testing.assert_allclose(got, reference, **BATCHED)
    if precision == "bf16":
        fp32 = embed_sequences(load_embedder("esm", test_models / "esm2"), data)
        assert min_cosine(fp32, got) >= 0.999


def test_fused_qkv_needs_sdpa(test_models):
    with pytest.raises(ValueError, match="fused QKV needs SDPA attention"):
        load_embedder(
            "esm", test_models / "esm2", kernels=KernelChoice(esm_attention="eager", esm_fused_qkv=True)
        )


def test_fp8_with_fused_qkv_quantizes_each_layer_input_once(wide_heads):
    data = random_proteins(24, 6)
    fp32 = embed_sequences(load_embedder("esm", wide_heads / "esm2"), data)
    kernels = KernelChoice(esm_fused_qkv=True)
    fp8 = load_embedder("esm", wide_heads / "esm2", precision="fp8", kernels=kernels)
    attention = fp8.model.encoder.layer[0].attention.self
    assert isinstance(attention.qkv, Fp8Linear) and attention.qkv.out_features == 3 * 64
    calls = []
    original = attention.qkv.quantize
    attention.qkv.quantize = lambda rows: calls.append(rows.shape) or original(rows)
    try:
        got = embed_sequences(fp8, data)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"this torch has no CPU kernel for torch._scaled_mm ({err})")
    assert calls and all(shape[1] == 64 for shape in calls)  # one quantization per batch for Q, K and V
    assert min_cosine(fp32, got) >= 0.99


def test_quantizing_bf16_directly_gives_the_float32_path_numbers():
    x = torch.randn(33, 128, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16) * 7
    q, scale = quantize_rows(x)
    q32, scale32 = quantize_rows(x.float())
    assert torch.equal(scale, scale32) and torch.equal(q.float(), q32.float())


@pytest.mark.slow
def test_compiled_quantization_gives_the_eager_numbers(inductor_cache):
    x = torch.randn(70, 256, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    q, scale = compiled_quantize_rows()(x)
    eager_q, eager_scale = quantize_rows(x)
    torch.testing.assert_close(scale, eager_scale, rtol=1e-6, atol=0)
    # One e4m3 step at most where a division rounded differently, in a few elements at most.
    differs = (q.float() != eager_q.float()).float().mean().item()
    assert differs <= 0.01
    torch.testing.assert_close(q.float() * scale, eager_q.float() * eager_scale, rtol=0.07, atol=1e-3)


@pytest.mark.slow
def test_compiled_esm_layers_agree_with_eager(test_models, inductor_cache):
    """Regional compilation: the layers compiled by inductor (CPU here), fused QKV included."""
    data = random_proteins(20, 7)
    reference = embed_sequences(load_embedder("esm", test_models / "esm2"), data)
    kernels = KernelChoice(esm_fused_qkv=True, compile_esm=True)
    compiled = load_embedder("esm", test_models / "esm2", kernels=kernels)
    assert compiled.attention_kernel == "sdpa (fused QKV, compiled layers)"
    np.testing.assert_allclose(embed_sequences(compiled, data), reference, rtol=1e-4, atol=1e-5)
