"""float8 linear layers for `--precision fp8` (ESM-2 on Hopper GPUs and newer).

Weights are quantized once to float8 e4m3 with one scale per output row; activations are
quantized on the fly with one scale per token row. The product runs in `torch._scaled_mm` (the
tensor cores' fp8 matmul with float32 accumulation), row-wise scales applied to its bf16 output,
then the bias is added. Scales are amax / 448 (e4m3's largest value), computed in float32. The
activation quantization runs as a few eager kernels, or compiled into one (`compiled_quantize`).
"""

from __future__ import annotations

import torch
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448

WIDTH_MULTIPLE = 16  # _scaled_mm needs both matrix widths divisible by 16


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(q, scale)`: x [rows, k] as float8 e4m3 and float32 scales [rows, 1], x ~ q * scale.

    Reads x in its own dtype (bf16 activations are not copied to float32 first: a row's max is one
    of its values, and the division promotes to float32 inside its kernel); the same numbers as
    quantizing `x.float()`."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


_COMPILED_QUANTIZE = None


def compiled_quantize_rows():
    """`quantize_rows` compiled once per process: one fused pass over the activations instead of
    four (abs-max, divide, clamp, cast)."""
    global _COMPILED_QUANTIZE
    if _COMPILED_QUANTIZE is None:
        _COMPILED_QUANTIZE = torch.compile(quantize_rows, dynamic=True)
    return _COMPILED_QUANTIZE


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


class Fp8Linear(nn.Module):
    """`nn.Linear` with float8 weights (row-wise scales) and float8 activations (per-token scales)."""

    def __init__(
        self, linear: nn.Linear, out_dtype: torch.dtype = torch.bfloat16, compiled_quantize: bool = False
    ):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        if self.in_features % WIDTH_MULTIPLE or self.out_features % WIDTH_MULTIPLE:
            raise ValueError(
                f"fp8 needs layer widths divisible by {WIDTH_MULTIPLE}; this layer is "
                f"{self.in_features} -> {self.out_features}"
            )
        weight, scale = quantize_rows(linear.weight.detach())
        self.register_buffer("weight_fp8", weight)  # [out, in], row-major: its .t() is column-major
        self.register_buffer("weight_scale", scale.t().contiguous())  # [1, out]
        bias = linear.bias.detach().to(out_dtype) if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.out_dtype = out_dtype
        self.quantize = compiled_quantize_rows() if compiled_quantize else quantize_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        q, scale = self.quantize(rows)
        out = torch._scaled_mm(
            q, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=self.out_dtype
        )
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def convert_linears(module: nn.Module, compiled_quantize: bool = False) -> int:
    """Replace every `nn.Linear` under `module` by an `Fp8Linear`, in place; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, Fp8Linear(child, compiled_quantize=compiled_quantize))
            count += 1
        else:
            count += convert_linears(child, compiled_quantize)
    return count
