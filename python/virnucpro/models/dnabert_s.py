"""DNABERT-S, implemented natively: the MosaicBERT-style encoder of the hub checkpoint
`zhihan1996/DNABERT-S` (ALiBi attention bias instead of position embeddings, fused Wqkv, gated-GELU
MLP, post-LayerNorm), without the hub's remote code or triton.

The reference runs "unpadded" (only real tokens go through the linear layers); here a batch is
right-padded and padded keys are masked out of attention, which gives the same values for every
real token. Padded positions of the output are set to zero, as the reference's re-padding does.
Attention runs through PyTorch's scaled_dot_product_attention, in any dtype, at any length (the
ALiBi bias is built for the length at hand; there is no 512-token cap).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from virnucpro.errors import InputError
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
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in raw.items() if k in known})
        if config.hidden_size % config.num_attention_heads:
            raise InputError(f"{path}: hidden_size is not a multiple of num_attention_heads")
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


class DnabertSelfAttention(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        qkv = self.Wqkv(hidden).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # each [b, h, s, d]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
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

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, bias), hidden)


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

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(hidden, bias))


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
    """The encoder; `forward` returns the last hidden state [batch, length, hidden]."""

    def __init__(self, config: DnabertConfig, add_pooling_layer: bool = False):
        super().__init__()
        self.config = config
        self.embeddings = DnabertEmbeddings(config)
        self.encoder = DnabertEncoder(config)
        self.pooler = DnabertPooler(config) if add_pooling_layer else None

    def attention_bias(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """ALiBi plus the key mask: [batch, heads, s, s]; padded keys get -inf."""
        length = attention_mask.shape[1]
        bias = alibi_bias(self.config.num_attention_heads, length, attention_mask.device)
        # Every query row keeps at least its [CLS] key, so -inf never empties a softmax row.
        keys = attention_mask[:, None, None, :].bool()
        return bias.masked_fill(~keys, float("-inf")).to(dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.embeddings(input_ids)
        bias = self.attention_bias(attention_mask, hidden.dtype)
        for layer in self.encoder.layer:
            hidden = layer(hidden, bias)
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
        return [encoding.ids for encoding in self._tokenizer.encode_batch(sequences)]


def weights_file(folder: Path) -> Path:
    for name in (SAFETENSORS_FILE, PYTORCH_BIN_FILE):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"{folder}: no {SAFETENSORS_FILE} or {PYTORCH_BIN_FILE} (a DNABERT-S model folder)")


# DNABERT-S holds 117 M parameters (470 MB in float32); a .bin declaring more than this is refused.
BIN_MAX_BYTES = 2 << 30


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Checkpoint tensors under the package's names: `bert.` prefix dropped, `cls.*` heads ignored.
    A `.bin` file is read with `weights_only=True`, so no pickled code runs."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(path))
    else:
        import pickle

        from virnucpro.torch_archives import check_torch_archive

        check_torch_archive(path, BIN_MAX_BYTES, "DNABERT-S weights")
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise InputError(f"{path}: not a plain weights file (refused to unpickle it): {err}") from err
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


def load_dnabert(
    folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[DnabertModel, DnabertTokenizer]:
    """Model (eval mode, on `device`, in `dtype`) and tokenizer from a hub-layout folder."""
    folder = Path(folder)
    check_folder(folder)
    config = DnabertConfig.from_file(folder / CONFIG_FILE)
    state = load_state_dict(weights_file(folder))
    model = DnabertModel(config, add_pooling_layer=any(k.startswith("pooler.") for k in state))
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise InputError(f"{folder}: checkpoint lacks {len(missing)} tensors, e.g. {', '.join(missing[:3])}")
    unexpected = sorted(set(state) - expected)
    if unexpected:
        log.warning("%s: ignoring %d unknown tensors, e.g. %s", folder, len(unexpected), unexpected[0])
    model.load_state_dict({k: state[k] for k in expected})
    model = model.to(device=device, dtype=dtype).eval()
    return model, DnabertTokenizer(folder / TOKENIZER_FILE)
