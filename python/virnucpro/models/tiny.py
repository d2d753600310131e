"""Small random models with the real architectures, for tests, the Nextflow `test` profile and
`make example`; `virnucpro.stages.make_test_models.make_test_models(folder)` writes

- `dnabert-s/`: config.json (the real config's fields, small sizes, 12 heads, ALiBi built for 64
  positions so that 500 bp chunks exceed it), model.safetensors (the hub checkpoint's key names,
  `bert.` prefix and an unused `cls.*` head included) and tokenizer.json (a BPE tokenizer trained on
  fixed synthetic DNA, special tokens [UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4, `[CLS] $A [SEP]`);
- `esm2/`: a transformers `EsmForMaskedLM` folder with the real ESM-2 quirks (token dropout,
  rotary positions, no embedding LayerNorm) and the standard 33-token vocabulary;
- `classifier/`: an `MLPClassifier` over the two widths, its BatchNorm statistics measured on
  synthetic frames embedded by the two models above (`virnucpro.stages.make_test_models`, which
  embeds them), and a zero output bias, so that some chunks are called viral and some not.

The same library versions give the same bytes on every run: weights come from seeded generators,
the tokenizer from a fixed corpus, and the classifier's statistics are rounded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from virnucpro.files.atomic import atomic_path

SEED = 20261129
DNABERT_CONFIG = {
    "pad_token_id": 0,
    "vocab_size": 512,
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 12,
    "hidden_act": "gelu",
    "intermediate_size": 96,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "alibi_starting_size": 64,
}
DNABERT_SPECIAL_TOKENS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
ESM_VOCAB = [
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
]  # fmt: skip
ESM_CONFIG = {
    "vocab_size": 33,
    "hidden_size": 40,
    "num_hidden_layers": 2,
    "num_attention_heads": 5,
    "intermediate_size": 80,
    "max_position_embeddings": 1026,
    "position_embedding_type": "rotary",
    "token_dropout": True,
    "emb_layer_norm_before": False,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "mask_token_id": 32,
    "pad_token_id": 1,
}
CLASSIFIER_HIDDEN = 32


def synthetic_dna(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    """DNA with some structure (a few recurring motifs among random bases), so BPE learns merges and
    the models see varied inputs."""
    motifs = ["".join(rng.choice("ACGT") for _ in range(rng.randint(3, 9))) for _ in range(24)]
    out = []
    for _ in range(count):
        parts: list[str] = []
        target = rng.randint(low, high)
        while sum(map(len, parts)) < target:
            parts.append(rng.choice(motifs) if rng.random() < 0.4 else rng.choice("ACGT") * rng.randint(1, 3))
        out.append("".join(parts)[:target])
    return out


def open_reading_frames(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    """DNA made of sense codons (half of it reverse-complemented), so that chunks keep stop-free
    frames, as coding sequence does; random DNA would keep almost none."""
    sense = [
        a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in ("TAA", "TAG", "TGA")
    ]
    complement = str.maketrans("ACGT", "TGCA")
    out = []
    for i in range(count):
        dna = "".join(rng.choice(sense) for _ in range(rng.randint(low, high) // 3))
        out.append(dna.translate(complement)[::-1] if i % 2 else dna)
    return out


def train_dna_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=DNABERT_SPECIAL_TOKENS,
        initial_alphabet=list("ACGTN"),
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(synthetic_dna(random.Random(SEED), 400, 200, 600), trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tokenizer


def seeded_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Fresh values for every parameter, from one generator in sorted-name order: LayerNorm scales
    near 1, embeddings with unit-scale spread, everything else small. Buffers (ESM-2's rotary
    frequencies) keep the values the architecture computes, as in the real checkpoints."""
    generator = torch.Generator().manual_seed(seed)
    parameters = {name for name, _ in model.named_parameters()}
    state = {}
    for name, tensor in sorted(model.state_dict().items()):
        if not tensor.is_floating_point() or name not in parameters:
            state[name] = tensor
            continue
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
        lowered = name.lower()
        if "layernorm.weight" in lowered or "layer_norm.weight" in lowered:
            value = 1.0 + 0.1 * noise
        elif "embeddings" in lowered and name.endswith("weight"):
            value = noise
        else:
            value = 0.05 * noise
        state[name] = value.to(tensor.dtype).contiguous()
    return state


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def make_dnabert(folder: Path, **sizes) -> None:
    """A DNABERT-S folder; `sizes` override config fields (benchmarks build larger ones)."""
    from safetensors.torch import save_file

    from virnucpro.models.dnabert_s import DnabertConfig, DnabertModel

    folder.mkdir(parents=True, exist_ok=True)
    raw_config = {**DNABERT_CONFIG, **sizes}
    config = DnabertConfig(**raw_config)
    model = DnabertModel(config, add_pooling_layer=True)
    state = {f"bert.{k}": v for k, v in seeded_state(model, SEED).items()}
    # The hub checkpoint also carries a masked-LM head; loading must ignore it.
    generator = torch.Generator().manual_seed(SEED + 1)
    state["cls.predictions.bias"] = 0.05 * torch.randn(config.vocab_size, generator=generator)
    write_json(folder / "config.json", raw_config)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    tokenizer = train_dna_tokenizer(config.vocab_size)
    with atomic_path(folder / "tokenizer.json") as tmp:
        tmp.write_text(tokenizer.to_str(pretty=True), encoding="utf-8")


def make_esm(folder: Path, **sizes) -> None:
    """An ESM-2 folder; `sizes` override config fields (benchmarks build larger ones)."""
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    from virnucpro.models.esm2 import quiet_transformers

    quiet_transformers()
    folder.mkdir(parents=True, exist_ok=True)
    config = EsmConfig(**{**ESM_CONFIG, **sizes})
    model = EsmForMaskedLM(config)
    model.load_state_dict(seeded_state(model, SEED + 2), strict=False)
    model.save_pretrained(str(folder))
    with atomic_path(folder / "vocab.txt") as tmp:
        tmp.write_text("\n".join(ESM_VOCAB) + "\n", encoding="utf-8")
    EsmTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))


def calibrated_classifier(features: torch.Tensor, hidden_dim: int = CLASSIFIER_HIDDEN):
    """A random `MLPClassifier` over `features`' width whose BatchNorm statistics are measured on
    `features` and whose output is centred on them, so that its calls split both ways (a random
    classifier that calls everything one way would make label checks meaningless)."""
    from virnucpro.method.classifier import MLPClassifier

    torch.manual_seed(SEED + 4)
    model = MLPClassifier(features.shape[1], hidden_dim=hidden_dim).eval()
    with torch.no_grad():
        hidden = model.hidden_layer(features)

        def rounded(x: torch.Tensor) -> torch.Tensor:
            # 3 significant digits: last-bit differences between CPUs do not change the file.
            return torch.from_numpy(np.array([float(f"{v:.3g}") for v in x.tolist()], dtype=np.float32))

        model.bn1.running_mean.copy_(rounded(hidden.mean(dim=0)))
        model.bn1.running_var.copy_(rounded(hidden.var(dim=0)))
        # Virus minus others logit is w . relu(bn(h)); taking out the mean activation's direction
        # centres it on zero, so calls split both ways instead of all going one way.
        activation = torch.relu(model.bn1(hidden)).mean(dim=0)
        direction = model.output_layer.weight[1] - model.output_layer.weight[0]
        direction = direction - (direction @ activation) / (activation @ activation) * activation
        model.output_layer.weight.copy_(torch.stack([-direction / 2, direction / 2]))
        model.output_layer.weight.copy_(rounded(model.output_layer.weight.reshape(-1)).reshape(2, -1))
        model.output_layer.bias.zero_()
    return model


def make_classifier(folder: Path, features: torch.Tensor) -> None:
    """`classifier/` under `folder`: `calibrated_classifier` over `features` (`calibration_features`
    of `virnucpro.stages.make_test_models`: the frames of CALIBRATION_DNA embedded by the two models)."""
    from virnucpro.method.classifier import ClassifierConfig, save_classifier

    dnabert_dim, esm_dim = DNABERT_CONFIG["hidden_size"], ESM_CONFIG["hidden_size"]
    model = calibrated_classifier(features)
    config = ClassifierConfig(
        input_dim=dnabert_dim + esm_dim,
        hidden_dim=CLASSIFIER_HIDDEN,
        dnabert_dim=dnabert_dim,
        esm_dim=esm_dim,
        source="virnucpro make-test-models (random weights, for tests only)",
    )
    save_classifier(model, folder / "classifier", config)
