"""ESM-2 through `transformers.EsmModel` (no pooling layer).

Proteins are encoded `<cls> residues <eos>` whole, as the original tool's fair-esm batch converter
did (it was given no truncation length; ESM-2's rotary positions take any length); only the mean
stops at residue 1024 (`MAX_POOLED_RESIDUES`, applied by the engine's pooling).

Attention is one of `ATTENTION_KINDS`, transformers' own implementations: `sdpa` (the default:
PyTorch's scaled_dot_product_attention with a boolean padding mask), `flex_attention` or `eager`.
Two optional speed levers act on a loaded model: `fuse_qkv` (one projection for query, key and
value) and `compile_layers` (regional torch.compile of the encoder layers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from virnucpro.errors import InputError
from virnucpro.models.batching import TokenTable
from virnucpro.models.checkpoints import read_config, read_tensors
from virnucpro.models.precision import PRECISION_MODES, PrecisionMode, apply_precision

MAX_POOLED_RESIDUES = 1024  # the original's mean covers residues 1..min(len, 1024)
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
ATTENTION_KINDS = ("sdpa", "flex_attention", "eager")
# Parameters of EsmModel that a checkpoint may lack (unused by embedding).
OPTIONAL_PREFIXES = ("contact_head.", "pooler.")


def quiet_transformers() -> None:
    """transformers' load reports and progress bars would mix with our progress on stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class EsmEncoder:
    """Residue letters to token ids with the model folder's own vocabulary (`vocab.txt`), one token
    per character: the vocabulary's one-letter tokens (the 20 amino acids, X, B, U, Z, O, `.`, `-`)
    map to themselves, as in fair-esm and `EsmTokenizer`; any other character becomes `<unk>`
    (fair-esm would fail on it). Vectorised: one lookup table over the shard's code points."""

    def __init__(self, folder: Path):
        vocab = read_vocab(folder / VOCAB_FILE)
        self.cls_id, self.eos_id = vocab["<cls>"], vocab["<eos>"]
        self.pad_id, self.unk_id = vocab["<pad>"], vocab["<unk>"]
        self._table = np.full(128, self.unk_id, dtype=np.int64)
        for token, index in vocab.items():
            if len(token) == 1 and token.isascii():
                self._table[ord(token)] = index

    def encode_table(self, proteins: list[str]) -> TokenTable:
        count = len(proteins)
        residues = np.fromiter(map(len, proteins), dtype=np.int64, count=count)
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(residues + 2, out=offsets[1:])
        codes = np.frombuffer("".join(proteins).encode("utf-32-le"), dtype=np.uint32)
        letters = np.where(codes < 128, self._table[np.minimum(codes, 127)], self.unk_id)
        flat = np.empty(int(offsets[-1]), dtype=np.int64)
        inner = np.ones(len(flat), dtype=bool)
        inner[offsets[:-1]] = False
        inner[offsets[1:] - 1] = False
        flat[offsets[:-1]] = self.cls_id
        flat[offsets[1:] - 1] = self.eos_id
        flat[inner] = letters
        return TokenTable(flat, offsets)

    def encode(self, proteins: list[str]) -> list[list[int]]:
        table = self.encode_table(proteins)
        return [table.row(i) for i in range(len(table))]


def read_vocab(path: Path) -> dict[str, int]:
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the ESM-2 vocabulary ({err})") from None
    vocab = {token.strip(): index for index, token in enumerate(tokens)}
    missing = [t for t in ("<cls>", "<eos>", "<pad>", "<unk>") if t not in vocab]
    if missing:
        raise InputError(f"{path}: not an ESM vocabulary (no {', '.join(missing)})")
    return vocab


def check_folder(folder: Path) -> None:
    """Fail early, with the missing file named, on a folder that is not an ESM-2 model."""
    for name in (CONFIG_FILE, VOCAB_FILE):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: no {name} (an ESM-2 model folder)")
    if not weight_files(folder):
        raise InputError(f"{folder}: no model.safetensors or pytorch_model.bin (an ESM-2 model folder)")
    read_config(folder / CONFIG_FILE)


def esm_config(folder: Path):
    """The `EsmConfig` of a model folder, checked: its fields (`read_config`), transformers' own
    checks, and a size the weights files can hold (a config that asks for far more parameters than
    the checkpoint has would otherwise allocate them all before the weights are compared)."""
    quiet_transformers()
    from transformers import EsmConfig

    path = folder / CONFIG_FILE
    raw = read_config(path)
    try:
        config = EsmConfig(**raw)
    except Exception as err:  # transformers' own checks: their exception types change between releases
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{path}: not an ESM-2 configuration ({first[:200]})") from None
    hidden, layers = config.hidden_size, config.num_hidden_layers
    parameters = config.vocab_size * hidden + layers * (
        4 * hidden * hidden + 2 * hidden * config.intermediate_size
    )
    stored = sum(p.stat().st_size for p in weight_files(folder))
    # A checkpoint holds at least one byte per parameter; a small model is built whatever it says
    # (its weights are compared then).
    if parameters > max(stored, 1 << 24):
        raise InputError(
            f"{path}: describes a model of {parameters:,} parameters, but its weights files hold "
            f"{stored:,} bytes (config and weights of different models?)"
        )
    return config


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


def attention_implementation(requested: str = "sdpa") -> str:
    """`requested` when this transformers version offers it for ESM, else its eager attention."""
    from transformers.models.esm.modeling_esm import EsmPreTrainedModel

    if requested not in ATTENTION_KINDS:
        raise ValueError(f"ESM-2 attention {requested!r}: use one of {', '.join(ATTENTION_KINDS)}")
    supported = {
        "sdpa": getattr(EsmPreTrainedModel, "_supports_sdpa", False),
        "flex_attention": getattr(EsmPreTrainedModel, "_supports_flex_attn", False),
        "eager": True,
    }
    return requested if supported[requested] else "eager"


def load_esm(
    folder: str | Path,
    device: torch.device | str = "cpu",
    mode: PrecisionMode = PRECISION_MODES["fp32"],
    attention: str = "sdpa",
):
    """`(EsmModel, EsmEncoder)` from a transformers model folder (EsmModel or EsmForMaskedLM
    checkpoint; heads other than the encoder are ignored), in eval mode.

    The model is built on `device` in `mode`'s dtypes and its weights are copied in tensor by tensor
    from the memory-mapped checkpoint, so no full host copy (let alone a float32 one) is made. A
    broken config, weights that do not match it, or a `.bin` that holds more than tensors raise
    `InputError` naming the file."""
    folder = Path(folder)
    check_folder(folder)
    from transformers import EsmModel

    device = torch.device(device)
    config = esm_config(folder)
    config._attn_implementation = attention_implementation(attention)
    with torch.device(device):
        model = EsmModel(config, add_pooling_layer=False)
    apply_precision(model, mode)
    targets = model.state_dict()
    loaded: set[str] = set()
    for path in weight_files(folder):
        for key, tensor in read_tensors(path):
            name = parameter_name(key)
            if name not in targets:
                continue  # the masked-LM head, old per-layer rotary frequencies
            if tuple(tensor.shape) != tuple(targets[name].shape):
                raise InputError(
                    f"{path}: tensor {key} has shape {list(tensor.shape)}, but {folder / CONFIG_FILE} "
                    f"makes it {list(targets[name].shape)} (weights and config of different models?)"
                )
            targets[name].copy_(tensor)
            loaded.add(name)
    persistent = {name for name, _ in model.named_parameters()}
    missing = sorted(n for n in persistent - loaded if not n.startswith(OPTIONAL_PREFIXES))
    if missing:
        raise InputError(
            f"{folder}: the checkpoint lacks {len(missing)} tensors, e.g. {', '.join(missing[:3])}"
        )
    return model.eval(), EsmEncoder(folder)


def parameter_name(key: str) -> str:
    """`EsmModel`'s name for a checkpoint key: no `esm.` prefix (EsmForMaskedLM checkpoints), and
    LayerNorm's legacy `gamma`/`beta` (which transformers still writes) as `weight`/`bias`."""
    name = key.removeprefix("esm.")
    for legacy, current in ((".gamma", ".weight"), (".beta", ".bias")):
        if name.endswith(legacy):
            return name[: -len(legacy)] + current
    return name


class FusedQkvSelfAttention(nn.Module):
    """Drop-in for transformers' `EsmSelfAttention` (SDPA only) with one projection for query, key
    and value: one matmul instead of three, and under fp8 one quantization of the input. The rest is
    transformers' arithmetic: the query scaled by head_dim^-0.5 before the rotary positions (applied
    by transformers' own function, in float32), then SDPA with the boolean padding mask."""

    def __init__(self, original: nn.Module):
        super().__init__()
        self.heads = original.num_attention_heads
        self.head_dim = original.attention_head_size
        parts = (original.query, original.key, original.value)
        weight = parts[0].weight
        self.qkv = nn.Linear(weight.shape[1], 3 * weight.shape[0], device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([p.weight for p in parts]))
            self.qkv.bias.copy_(torch.cat([p.bias for p in parts]))

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **_):
        from transformers.models.esm.modeling_esm import apply_rotary_pos_emb

        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [batch, heads, length, head_dim]
        query = query * self.head_dim**-0.5
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin, unsqueeze_dim=1)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=1.0)
        return attended.transpose(1, 2).reshape(batch, length, -1), None


def fuse_qkv(model) -> int:
    """Give every layer of an `EsmModel` (SDPA attention, rotary positions) a `FusedQkvSelfAttention`,
    in place; returns how many layers changed."""
    config = model.config
    if config._attn_implementation != "sdpa" or config.position_embedding_type != "rotary":
        raise ValueError(
            "fused QKV needs SDPA attention and rotary positions; this model has "
            f"{config._attn_implementation} and {config.position_embedding_type}"
        )
    for layer in model.encoder.layer:
        layer.attention.self = FusedQkvSelfAttention(layer.attention.self)
    return len(model.encoder.layer)


def compile_layers(model) -> None:
    """Regional compilation: each encoder layer compiled in place. The layers share their code, so
    one compiled graph serves all of them (dynamic shapes: other batch sizes and lengths reuse it);
    inductor fuses the memory-bound steps between the matmuls (GELU, rotary, casts, residual adds)."""
    for layer in model.encoder.layer:
        layer.compile(dynamic=True)
