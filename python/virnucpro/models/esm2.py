"""ESM-2 through `transformers.EsmModel` (no pooling layer), SDPA attention where transformers
offers it. Proteins are encoded `<cls> residues <eos>` with at most 1024 residues, as the original
tool's fair-esm batch converter did (`truncation_seq_length=1024`); ESM-2 has 1026 positions."""

from __future__ import annotations

from pathlib import Path

import torch

from virnucpro.errors import InputError

MAX_RESIDUES = 1024
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"


def quiet_transformers() -> None:
    """transformers' load reports and progress bars would mix with our progress on stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class EsmEncoder:
    """Residue letters to token ids with the model folder's own vocabulary (`vocab.txt`); one token
    per letter, unknown letters become `<unk>`, as `EsmTokenizer` and fair-esm do."""

    def __init__(self, folder: Path):
        from transformers import EsmTokenizer

        tokenizer = EsmTokenizer.from_pretrained(str(folder))
        vocab = tokenizer.get_vocab()
        self.cls_id = tokenizer.cls_token_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self.unk_id = tokenizer.unk_token_id
        self._letters = {token: index for token, index in vocab.items() if len(token) == 1}

    def encode(self, proteins: list[str]) -> list[list[int]]:
        letters, unk = self._letters, self.unk_id
        return [
            [self.cls_id, *(letters.get(c, unk) for c in protein[:MAX_RESIDUES]), self.eos_id]
            for protein in proteins
        ]


def check_folder(folder: Path) -> None:
    """Fail early, with the missing file named, on a folder that is not an ESM-2 model."""
    for name in (CONFIG_FILE, VOCAB_FILE):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: no {name} (an ESM-2 model folder)")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        raise InputError(f"{folder}: no model.safetensors or pytorch_model.bin (an ESM-2 model folder)")


def attention_implementation() -> str:
    """SDPA when this transformers version offers it for ESM, else its eager attention."""
    from transformers.models.esm.modeling_esm import EsmPreTrainedModel

    return "sdpa" if getattr(EsmPreTrainedModel, "_supports_sdpa", False) else "eager"


def load_esm(folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """`(EsmModel, EsmEncoder)` from a transformers model folder (EsmModel or EsmForMaskedLM
    checkpoint; heads other than the encoder are ignored), eval mode, on `device`, in `dtype`."""
    folder = Path(folder)
    check_folder(folder)
    quiet_transformers()
    from transformers import EsmModel

    model = EsmModel.from_pretrained(
        str(folder), add_pooling_layer=False, dtype=dtype, attn_implementation=attention_implementation()
    )
    return model.to(device).eval(), EsmEncoder(folder)
