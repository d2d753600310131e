"""DNABERT-S, implemented natively: the MosaicBERT-style encoder of the hub checkpoint
`zhihan1996/DNABERT-S` (ALiBi attention bias instead of position embeddings, fused Wqkv, gated-GELU
MLP, post-LayerNorm), without the hub's remote code or triton.

The reference runs "unpadded" (only real tokens go through the linear layers); here a batch is
right-padded and padded keys are masked out of attention, which gives the same values for every
real token. Padded positions of the output are set to zero, as the reference's re-padding does.

Attention, at any length (there is no 512-token cap), one of `ATTENTION_KINDS`:
- `sdpa`: PyTorch's scaled_dot_product_attention with a dense [batch, heads, L, L] float32
  ALiBi-plus-padding bias, the reference path; attention itself runs in float32 whatever the
  inputs' dtype (the bias is not rounded, and SDPA wants the mask in the query's dtype).
- `flex`: FlexAttention with ALiBi and the padding mask computed inside the kernel by a score
  modifier, in float32 whatever the inputs' dtype (no dense bias tensor); compiled into one fused
  kernel where `compile_flex` is set (GPUs), else PyTorch's unfused reference implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from virnucpro.errors import InputError
from virnucpro.models.batching import TokenTable
from virnucpro.models.checkpoints import load_weights_only, read_config
from virnucpro.models.precision import PRECISION_MODES, PrecisionMode, apply_precision
from virnucpro.progress import log

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
SAFETENSORS_FILE = "model.safetensors"
PYTORCH_BIN_FILE = "pytorch_model.bin"
# Heads of the checkpoint that embedding does not use (masked-LM head and the like).
IGNORED_KEY_PREFIXES = ("cls.",)


@dataclass(frozen=True)
class DnabertConfig:
    """The fields of the hub's config.json that shape the network (the rest is ignored)."""

    vocab_size: int = 4096
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    alibi_starting_size: int = 512
    max_position_embeddings: int = 512
    pad_token_id: int = 0
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.0

    @classmethod
    def from_file(cls, path: Path) -> DnabertConfig:
        """The config of `path`, or an `InputError` naming the file and what is wrong with it."""
        defaults = cls().to_dict()
        raw = read_config(Path(path), defaults)
        config = cls(**{k: v for k, v in raw.items() if k in defaults})
        if config.hidden_act != "gelu":
            raise InputError(f"{path}: hidden_act {config.hidden_act!r}; DNABERT-S uses 'gelu'")
        return config

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def alibi_slopes(n_heads: int) -> list[float]:
    """The per-head ALiBi slopes of the reference, including its rule for head counts that are not
    a power of two (interleave the slopes of the next power of two)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


def alibi_bias(n_heads: int, size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """[1, heads, size, size] bias: -slope * |i - j|, computed as the reference does (float32)."""
    context = torch.arange(size, device=device)[:, None]
    memory = torch.arange(size, device=device)[None, :]
    relative = torch.abs(memory - context).unsqueeze(0).expand(n_heads, -1, -1)
    slopes = torch.tensor(alibi_slopes(n_heads), dtype=torch.float32, device=device)
    return (slopes.unsqueeze(1).unsqueeze(1) * -relative).unsqueeze(0)


class DnabertEmbeddings(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Token type 0 everywhere; no position embeddings (ALiBi carries position).
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(embeddings)


ATTENTION_KINDS = ("sdpa", "flex")


def alibi_score_mod(slopes: torch.Tensor, lengths: torch.Tensor):
    """FlexAttention score modifier: ALiBi (-slope[h] * |q - k|, float32) and -inf for padded keys.
    Every query keeps at least its [CLS] key, so no softmax row is empty."""

    def score_mod(score, b, h, q_idx, kv_idx):
        biased = score - slopes[h] * (q_idx - kv_idx).abs()
        return torch.where(kv_idx < lengths[b], biased, float("-inf"))

    return score_mod


_COMPILED_FLEX = None


def flex_attention_kernel(compiled: bool):
    """PyTorch's flex_attention, compiled once per process when asked (one fused kernel; dynamic
    shapes, so batches of other lengths do not recompile)."""
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    if not compiled:
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=True)
    return _COMPILED_FLEX


@dataclass(frozen=True)
class AttentionInputs:
    """What attention needs besides q, k, v: the dense bias (sdpa) or the slopes and real lengths
    that the flex score modifier reads."""

    bias: torch.Tensor | None = None
    slopes: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    compiled: bool = False


class DnabertSelfAttention(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, hidden: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        batch, length, width = hidden.shape
        qkv = self.Wqkv(hidden).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # each [b, h, s, d]
        if inputs.bias is not None:
            # The bias stays float32 (in bf16, -slope * |i - j| loses whole units within a frame), and
            # SDPA's kernels take a mask only in the query's dtype: this attention runs in float32 and
            # its output returns to the query's dtype. A no-op in fp32; a few percent of the FLOPs else.
            with torch.autocast(device_type=q.device.type, enabled=False):
                attended = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=inputs.bias
                ).to(q.dtype)
        else:
            kernel = flex_attention_kernel(inputs.compiled)
            score_mod = alibi_score_mod(inputs.slopes, inputs.lengths)
            attended = kernel(q.contiguous(), k.contiguous(), v.contiguous(), score_mod=score_mod)
        return attended.transpose(1, 2).reshape(batch, length, width)


class DnabertSelfOutput(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden) + residual)


class DnabertAttention(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.self = DnabertSelfAttention(config)
        self.output = DnabertSelfOutput(config)

    def forward(self, hidden: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        return self.output(self.self(hidden, inputs), hidden)


class DnabertGatedMLP(nn.Module):
    """Gated-GELU MLP with post-LayerNorm: LN(x + wo(gelu(gate) * value))."""

    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        projected = self.gated_layers(hidden)
        gate = projected[..., : self.intermediate_size]
        value = projected[..., self.intermediate_size :]
        return self.layernorm(self.wo(F.gelu(gate) * value) + hidden)


class DnabertLayer(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.attention = DnabertAttention(config)
        self.mlp = DnabertGatedMLP(config)

    def forward(self, hidden: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        return self.mlp(self.attention(hidden, inputs))


class DnabertEncoder(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.layer = nn.ModuleList(DnabertLayer(config) for _ in range(config.num_hidden_layers))


class DnabertPooler(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class DnabertModel(nn.Module):
    """The encoder; `forward` returns the last hidden state [batch, length, hidden].

    `attention` (one of `ATTENTION_KINDS`, default the reference `sdpa`) and `compile_flex` choose
    the attention path; every path gives the same values within float32 rounding."""

    def __init__(
        self,
        config: DnabertConfig,
        add_pooling_layer: bool = False,
        attention: str = "sdpa",
        compile_flex: bool = False,
    ):
        super().__init__()
        self.config = config
        self.use_attention(attention, compile_flex)
        self.embeddings = DnabertEmbeddings(config)
        self.encoder = DnabertEncoder(config)
        self.pooler = DnabertPooler(config) if add_pooling_layer else None

    def use_attention(self, attention: str, compile_flex: bool = False) -> None:
        """Switch the attention path (the weights stay): one of `ATTENTION_KINDS`."""
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention {attention!r}: use one of {', '.join(ATTENTION_KINDS)}")
        self.attention = attention
        self.compile_flex = compile_flex and attention == "flex"

    @property
    def head_dim(self) -> int:
        return self.config.hidden_size // self.config.num_attention_heads

    def attention_bias(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """ALiBi plus the key mask, float32: [batch, heads, s, s]; padded keys get -inf."""
        length = attention_mask.shape[1]
        bias = alibi_bias(self.config.num_attention_heads, length, attention_mask.device)
        # Every query row keeps at least its [CLS] key, so -inf never empties a softmax row.
        keys = attention_mask[:, None, None, :].bool()
        return bias.masked_fill(~keys, float("-inf"))

    def attention_inputs(self, attention_mask: torch.Tensor) -> AttentionInputs:
        if self.attention == "sdpa":
            return AttentionInputs(bias=self.attention_bias(attention_mask))
        slopes = torch.tensor(
            alibi_slopes(self.config.num_attention_heads), dtype=torch.float32, device=attention_mask.device
        )
        lengths = attention_mask.sum(dim=1)
        return AttentionInputs(slopes=slopes, lengths=lengths, compiled=self.compile_flex)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.embeddings(input_ids)
        inputs = self.attention_inputs(attention_mask)
        for layer in self.encoder.layer:
            hidden = layer(hidden, inputs)
        # The reference re-pads its unpadded output with zeros.
        return hidden * attention_mask[..., None].to(hidden.dtype)


class DnabertTokenizer:
    """The hub's fast BPE tokenizer (`tokenizer.json`), with its `[CLS] $A [SEP]` template, no
    truncation and no padding (padding is the batcher's job; the pad id comes from here)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exceptions for bad files
            raise InputError(f"{path}: not a readable tokenizers file ({err})") from err
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        pad = self._tokenizer.token_to_id("[PAD]")
        if pad is None:
            raise InputError(f"{path}: the tokenizer has no [PAD] token")
        self.pad_id: int = pad

    def encode(self, sequences: list[str]) -> list[list[int]]:
        # encode_batch runs in Rust, in parallel, without the GIL.
        return [encoding.ids for encoding in self._tokenizer.encode_batch(sequences)]

    def encode_table(self, sequences: list[str]) -> TokenTable:
        return TokenTable.from_lists(self.encode(sequences))


def weights_file(folder: Path) -> Path:
    for name in (SAFETENSORS_FILE, PYTORCH_BIN_FILE):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"{folder}: no {SAFETENSORS_FILE} or {PYTORCH_BIN_FILE} (a DNABERT-S model folder)")


# DNABERT-S holds 117 M parameters (470 MB in float32); a .bin declaring more than this is refused.
BIN_MAX_BYTES = 2 << 30


def load_state_dict(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Checkpoint tensors under the package's names, on `device`: `bert.` prefix dropped, `cls.*`
    heads ignored. A `.bin` file is read with `weights_only=True`, so no pickled code runs."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path), device=str(device))
        except SafetensorError as err:
            raise InputError(f"{path}: not a readable safetensors file ({err})") from None
    else:
        raw = {k: v.to(device) for k, v in load_weights_only(path, BIN_MAX_BYTES).items()}
    state = {}
    for key, tensor in raw.items():
        if key.startswith(IGNORED_KEY_PREFIXES):
            continue
        state[key.removeprefix("bert.")] = tensor
    return state


def check_folder(folder: Path) -> None:
    """Fail early, with the missing file named, on a folder that is not a DNABERT-S model."""
    for name in (CONFIG_FILE, TOKENIZER_FILE):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: no {name} (a DNABERT-S model folder)")
    weights_file(folder)
    DnabertConfig.from_file(folder / CONFIG_FILE)


def load_dnabert(
    folder: str | Path,
    device: torch.device | str = "cpu",
    mode: PrecisionMode = PRECISION_MODES["fp32"],
    attention: str = "sdpa",
    compile_flex: bool = False,
) -> tuple[DnabertModel, DnabertTokenizer]:
    """Model (eval mode, in `mode`'s dtypes) and tokenizer from a hub-layout folder. The weights
    are read straight onto `device` and cast there; the model is built without allocating weights
    of its own. A broken config, weights that do not match it or a `.bin` holding more than
    tensors raise `InputError` naming the file."""
    folder = Path(folder)
    check_folder(folder)
    config = DnabertConfig.from_file(folder / CONFIG_FILE)
    path = weights_file(folder)
    state = load_state_dict(path, device)
    with torch.device("meta"):
        model = DnabertModel(
            config,
            add_pooling_layer=any(k.startswith("pooler.") for k in state),
            attention=attention,
            compile_flex=compile_flex,
        )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise InputError(f"{folder}: checkpoint lacks {len(missing)} tensors, e.g. {', '.join(missing[:3])}")
    for name, target in expected.items():
        if state[name].shape != target.shape:
            raise InputError(
                f"{path}: tensor {name} has shape {list(state[name].shape)}, but {folder / CONFIG_FILE} "
                f"makes it {list(target.shape)} (weights and config of different models?)"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        log.warning("%s: ignoring %d unknown tensors, e.g. %s", folder, len(unexpected), unexpected[0])
    model.load_state_dict({k: state[k] for k in expected}, assign=True)
    apply_precision(model, mode)
    return model.eval(), DnabertTokenizer(folder / TOKENIZER_FILE)
