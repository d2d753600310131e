"""fp8 linear layers (`--precision fp8`, ESM-2 on Hopper): the row-wise quantization and the scaled
matmul, checked on CPU against float32 arithmetic (the GPU run is in test_gpu_paths.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from virnucpro.embedding.fp8 import FP8_MAX, Fp8Linear, convert_linears, dequantize_rows, quantize_rows


def test_row_quantization_keeps_e4m3_precision_relative_to_each_row():
    generator = torch.Generator().manual_seed(1)
    # Rows of very different magnitudes: each gets its own scale.
    x = torch.randn(64, 256, generator=generator) * torch.logspace(-3, 3, 64)[:, None]
    q, scale = quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (64, 1) and scale.dtype == torch.float32
    assert torch.equal(q.float().abs().amax(dim=1), torch.full((64,), FP8_MAX))  # each row's max maps to 448
    restored = dequantize_rows(q, scale)
    # 3 mantissa bits: a relative step of 2^-4 at most, plus the subnormal step (2^-9 x scale) near zero.
    bound = x.abs() * 2.0**-4 + scale * 2.0**-9
    assert bool((restored - x).abs().le(bound).all())
    assert (restored - x).norm() / x.norm() < 0.03


def test_fp8_linear_equals_its_dequantized_product_and_stays_near_fp32():
    generator = torch.Generator().manual_seed(2)
    linear = nn.Linear(128, 96)
    with torch.no_grad():
        linear.weight.copy_(0.05 * torch.randn(96, 128, generator=generator))
        linear.bias.copy_(torch.randn(96, generator=generator))
    x = torch.randn(3, 17, 128, generator=generator)
    try:
        out = Fp8Linear(linear)(x)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"this torch has no CPU kernel for torch._scaled_mm ({err})")
    assert out.shape == (3, 17, 96) and out.dtype == torch.bfloat16
    # The same quantized operands multiplied in float32: equal up to the bf16 output rounding.
    xq, xs = quantize_rows(x.reshape(-1, 128))
    wq, ws = quantize_rows(linear.weight)
    emulated = dequantize_rows(xq, xs) @ dequantize_rows(wq, ws).t() + linear.bias.to(torch.bfloat16).float()
    torch.testing.assert_close(out.float().reshape(-1, 96), emulated, rtol=1e-2, atol=1e-2)
    exact = linear(x).detach()
    assert (out.float() - exact).norm() / exact.norm() < 0.05


def test_widths_must_suit_the_tensor_cores_and_conversion_replaces_every_linear():
    with pytest.raises(ValueError, match="divisible by 16; this layer is 40 -> 80"):
        Fp8Linear(nn.Linear(40, 80))
    block = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32)))
    assert convert_linears(block) == 2
    assert isinstance(block[0], Fp8Linear) and isinstance(block[2][0], Fp8Linear)
    assert isinstance(block[2][1], nn.LayerNorm)
