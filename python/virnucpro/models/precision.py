"""Precision modes: which dtype each part of a model computes in.

- `fp32`: everything float32 (TF32 off on GPUs): the default, parity with the original tool and the
  published classifiers.
- `bf16`: mixed. Linear weights are stored in bf16 and the model runs under `torch.autocast`, so
  matmuls run in bf16 while the residual stream, embeddings, LayerNorm, softmax, the ALiBi bias
  and the pooling stay float32 (autocast never lowers LayerNorm or softmax; attention keeps its
  bias in float32, see the models).
- `bf16-cast`: the whole model cast to bf16, residual stream and LayerNorm included (what `bf16`
  meant before the mixed mode; kept for the GPU benchmark to compare against `bf16`).
- `fp16`: the whole model cast to fp16.
- `fp8`: `bf16`, with ESM-2's linear layers in float8 (e4m3, row-wise scales; `fp8.py`); Hopper
  GPUs or newer only. DNABERT-S runs as in `bf16`.

`bf16` is the mixed mode on the command line; `bf16-cast` is an engine mode only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from virnucpro.defaults import PRECISIONS


@dataclass(frozen=True)
class PrecisionMode:
    name: str
    linear_dtype: torch.dtype  # weights of nn.Linear layers
    other_dtype: torch.dtype  # every other parameter (embeddings, LayerNorm) and so the residual stream
    autocast_dtype: torch.dtype | None  # matmul dtype under torch.autocast; None: no autocast
    fp8_linear: bool = False  # ESM-2's linear layers in float8

    @property
    def tf32_off(self) -> bool:
        return self.name == "fp32"


PRECISION_MODES = {
    mode.name: mode
    for mode in (
        PrecisionMode("fp32", torch.float32, torch.float32, None),
        PrecisionMode("bf16", torch.bfloat16, torch.float32, torch.bfloat16),
        PrecisionMode("bf16-cast", torch.bfloat16, torch.bfloat16, None),
        PrecisionMode("fp16", torch.float16, torch.float16, None),
        PrecisionMode("fp8", torch.bfloat16, torch.float32, torch.bfloat16, fp8_linear=True),
    )
}
# What the commands accept (`bf16-cast` is for the benchmark).
CLI_PRECISIONS = PRECISIONS


def precision_mode(name: str) -> PrecisionMode:
    from virnucpro.errors import InputError

    if name not in PRECISION_MODES:
        raise InputError(f"--precision {name}: use one of {', '.join(CLI_PRECISIONS)}")
    return PRECISION_MODES[name]


def apply_precision(model: nn.Module, mode: PrecisionMode) -> nn.Module:
    """Cast `model`'s parameters in place, where they are: linear layers' to `mode.linear_dtype`,
    every other parameter to `mode.other_dtype`. Buffers (e.g. rotary frequencies) keep theirs."""
    linear_params = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    for param in model.parameters():
        dtype = mode.linear_dtype if id(param) in linear_params else mode.other_dtype
        if param.dtype != dtype:
            param.data = param.data.to(dtype)
    return model


def autocast(mode: PrecisionMode, device: torch.device):
    """The autocast context of `mode` on `device` (a no-op for the plain modes)."""
    if mode.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=mode.autocast_dtype)
