"""The device check's benchmark: full-size DNABERT-S and ESM-2 3B through the embedding engine on one
GPU, in steps ordered by what they are worth, each with its own deadline; the JSON is rewritten
after every step, so a run cut short keeps what it measured.

Steps (`--steps`, default all):
  1 dnabert-bf16   DNABERT-S, --precision bf16, default kernels: tokens/s, frames/s, MFU, compile time
  2 esm-bf16       ESM-2 3B, bf16, default kernels
  3 e2e-bf16       `virnucpro embed` in a subprocess on generated 500 bp frames (start-up, model
                   loading, tokenizing and writing included), projected to broad's 794,577 frames
  4 agreement      fp32 references on at most 512 sequences (TF32 off), the fp32 rate, and every
                   measured mode against them: smallest cosine, share of unchanged classifier calls
  5 original-loop  the original tool's fp32 one-sequence loop against the engine's fp32 rate
  6 fp8            ESM-2 fp8: eager quantization, compiled quantization, fused QKV (Hopper only)
  7 bf16-cast      both models cast whole to bf16 (the other bf16 flavour)
  8 kernels        ESM-2 fused QKV, compiled layers, both, fp8 with both, flex_attention;
                   DNABERT-S SDPA with a dense bias (the path without a compiler) and fp16
  9 e2e-fp8        `virnucpro embed` in fp8, when steps 6 found fp8 usable
  With --gpu-tests, the GPU tests (pytest -m gpu) run after step 5, their log under --logs.

Random weights at the real shapes are made once per model, directly in the compute dtypes on the
device; variants are copies of that model. Lengths are those of real 500 bp chunk frames:
DNABERT-S 110-150 tokens, ESM-2 52-168. At the end the check prints the choices the figures
support: the bf16 flavour, the fp8 implementation and the ESM-2 kernel.

    python bench/gpu.py --json gpu.json --logs DIR        # on a GPU machine (bench/device_check.sh)
    python bench/gpu.py --smoke --json smoke.json         # the same code on CPU, tiny shapes
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import numpy as np
import torch

from virnucpro.embedding.agreement import label_agreement, min_cosine
from virnucpro.embedding.engine import (
    EsmEmbedder,
    KernelChoice,
    choose_dnabert_attention,
    embed_table,
    load_embedder,
)
from virnucpro.models.batching import TokenTable
from virnucpro.models.precision import PRECISION_MODES, apply_precision
from virnucpro.models.tiny import (
    ESM_CONFIG,
    ESM_VOCAB,
    calibrated_classifier,
    make_dnabert,
    open_reading_frames,
)
from virnucpro.progress import configure_logging

REPO = Path(__file__).resolve().parents[1]
MODEL_NAMES = {"dnabert": "dnabert-s", "esm": "esm2"}
DNABERT_FULL = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "vocab_size": 4096, "alibi_starting_size": 512,
}  # fmt: skip
ESM_3B = {"hidden_size": 2560, "num_hidden_layers": 36, "num_attention_heads": 40, "intermediate_size": 10240}
# Smoke sizes: heads of 16 (compiled FlexAttention's least) and widths of 16s (fp8's tensor cores).
DNABERT_SMOKE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 96}
ESM_SMOKE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
# Dense bf16 peak TFLOP/s by GPU name (SXM datasheet figures; H200 and H100 share the chip).
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0}
BROAD_FRAMES = 794_577  # broad's subset, the end-to-end yardstick
# broad's own figures, 53 min at 16.5k ESM tokens/s, imply about 52M ESM tokens: 66 per frame.
BROAD_ESM_TOKENS_PER_FRAME = 53 * 60 * 16_500 / BROAD_FRAMES
AGREEMENT_ROWS = 512
# A fast mode is acceptable where its calls agree with fp32's on this share of frames, at least.
ACCEPTED_LABEL_AGREEMENT = 0.99
ACCEPTED_MIN_COSINE = 0.99


@dataclass
class Settings:
    smoke: bool
    device: torch.device
    peak_tflops: float | None
    sizes: dict
    batch: dict  # DNABERT-S sequences per batch, ESM-2 tokens per batch
    sequences: dict  # rows of each model's measurement table
    seconds: float  # least time per throughput measurement
    e2e_frames: int
    loop_rows: dict  # sequences through the original loop


class StepTimeout(Exception):
    pass


_EXPIRY = [float("inf")]  # monotonic time at which the current step's deadline passes


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise `StepTimeout` in this thread once `seconds` have passed (between two Python bytecodes:
    a compilation or a batch loop is cut at its next step). Code that catches it on the way (inductor
    wraps errors of its own) is caught up with by `check_deadline`."""

    def expire(signum, frame):
        raise StepTimeout(f"deadline of {seconds:.0f} s passed")

    previous = signal.signal(signal.SIGALRM, expire)
    _EXPIRY[0] = time.monotonic() + seconds
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _EXPIRY[0] = float("inf")


def check_deadline() -> None:
    if time.monotonic() >= _EXPIRY[0]:
        raise StepTimeout("deadline passed")


@dataclass
class Results:
    """Everything measured so far; `save` writes it atomically (a kill never leaves half a file)."""

    path: Path | None
    header: dict
    steps: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    agreement: list = field(default_factory=list)
    original_loop_ratio: dict = field(default_factory=dict)
    end_to_end: list = field(default_factory=list)
    choices: dict = field(default_factory=dict)

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            **self.header,
            "steps": self.steps,
            "rows": self.rows,
            "agreement": self.agreement,
            "original_loop_ratio": self.original_loop_ratio,
            "end_to_end": self.end_to_end,
            "choices": self.choices,
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def random_table(
    rng: np.random.Generator, lengths: np.ndarray, vocab: tuple[int, int], ends: tuple[int, int]
):
    """Random token ids of the given lengths, with the model's start and end tokens."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = rng.integers(vocab[0], vocab[1], size=int(offsets[-1]), dtype=np.int64)
    flat[offsets[:-1]] = ends[0]
    flat[offsets[1:] - 1] = ends[1]
    return TokenTable(flat, offsets)


def benchmark_tables(counts: dict, dnabert_vocab: int, seed: int = 1) -> dict[str, TokenTable]:
    rng = np.random.default_rng(seed)
    dnabert = rng.integers(110, 151, size=counts["dnabert"])  # [CLS] + BPE tokens of a 500 bp frame + [SEP]
    esm = 2 + rng.integers(50, 167, size=counts["esm"])  # <cls> residues <eos>
    return {
        "dnabert": random_table(rng, dnabert, (5, dnabert_vocab), (1, 2)),  # [CLS]=1, [SEP]=2
        "esm": random_table(rng, esm, (4, 24), (0, 2)),  # the 20 amino acids; <cls>=0, <eos>=2
    }


def table_slice(table: TokenTable, count: int) -> TokenTable:
    count = min(count, len(table))
    return TokenTable(table.flat[: table.offsets[count]], table.offsets[: count + 1])


def flops(kind: str, config, lengths: np.ndarray) -> float:
    """Forward FLOPs: the matmuls (2 per multiply-add) plus attention scores and mixing."""
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    mlp = (3 if kind == "dnabert" else 2) * hidden * inner
    lengths = lengths.astype(np.float64)
    return float(
        np.sum(2 * layers * (4 * hidden * hidden + mlp) * lengths + 4 * layers * hidden * lengths**2)
    )


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # the process's peak RSS


@contextlib.contextmanager
def dtype_default(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_random_esm(sizes: dict, device: torch.device):
    """A random `EsmModel` at `sizes`, built on `device` directly in bf16 (initialised there, no
    float32 copy of 3B weights), then in `bf16`'s layout: linear layers bf16, the rest float32."""
    from transformers import EsmConfig, EsmModel

    from virnucpro.models.esm2 import quiet_transformers

    quiet_transformers()
    config = EsmConfig(**{**ESM_CONFIG, **sizes})
    config._attn_implementation = "sdpa"
    torch.manual_seed(7)
    with torch.device(device), dtype_default(torch.bfloat16):
        model = EsmModel(config, add_pooling_layer=False)
    return apply_precision(model, PRECISION_MODES["bf16"]).eval()


def write_esm_folder(folder: Path, model, with_weights: bool) -> None:
    """The model as a folder `virnucpro embed` reads (weights as they are: bf16 linear layers)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_")}
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "esm"}, indent=2))
    (folder / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")
    if with_weights and not (folder / "model.safetensors").exists():
        state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


@dataclass(frozen=True)
class Variant:
    """One measured configuration of a model."""

    kind: str
    precision: str
    kernels: KernelChoice = field(default_factory=KernelChoice)
    path: str = "default"  # a short name for the kernel choice


class Bench:
    def __init__(self, settings: Settings, root: Path, results: Results, classifier_spec: str | None):
        self.s = settings
        self.root = root
        self.results = results
        self.classifier_spec = classifier_spec
        self.folders = {"dnabert": root / "dnabert-s", "esm": root / "esm2"}
        make_dnabert(self.folders["dnabert"], **settings.sizes["dnabert"])
        self.esm_master = build_random_esm(settings.sizes["esm"], settings.device)
        write_esm_folder(self.folders["esm"], self.esm_master, with_weights=False)
        vocab = json.loads((self.folders["dnabert"] / "config.json").read_text())["vocab_size"]
        self.tables = benchmark_tables(settings.sequences, vocab)
        self.vectors: dict[Variant, np.ndarray] = {}  # on the first AGREEMENT_ROWS rows
        self.references: dict[str, np.ndarray] = {}  # fp32, same rows
        self.fp32_rates: dict[str, float] = {}  # sequences/s of the engine's fp32 path

    # --- building embedders ---
    def embedder(self, variant: Variant):
        device, mode = self.s.device, PRECISION_MODES[variant.precision]
        if variant.kind == "dnabert":
            return load_embedder(
                "dnabert", self.folders["dnabert"], device, variant.precision, self.s.batch["dnabert"],
                kernels=variant.kernels,
            )  # fmt: skip
        from virnucpro.models.esm2 import EsmEncoder

        plain = variant.precision == "bf16" and variant.kernels == KernelChoice()
        model = self.esm_master if plain else apply_precision(copy.deepcopy(self.esm_master), mode)
        encoder = EsmEncoder(self.folders["esm"])
        return EsmEmbedder(
            model, encoder, device, mode, self.s.batch["esm"], variant.kernels, source="random ESM-2"
        )

    # --- measurements ---
    def throughput(self, variant: Variant) -> dict:
        device = self.s.device
        release(device)
        embedder = self.embedder(variant)
        table = self.tables[variant.kind]
        start = time.perf_counter()
        embed_table(embedder, table_slice(table, 64))  # compilation, if any, happens here
        synchronize(device)
        first_call = time.perf_counter() - start
        passes, start = 0, time.perf_counter()
        while True:
            embed_table(embedder, table)  # ends with one copy to the host: synchronised
            passes += 1
            elapsed = time.perf_counter() - start
            if elapsed >= self.s.seconds:
                break
        lengths = table.lengths
        tflops = flops(variant.kind, embedder.model.config, lengths) * passes / elapsed / 1e12
        row = {
            "model": MODEL_NAMES[variant.kind],
            "precision": variant.precision,
            "path": variant.path,
            "tokens_per_s": float(lengths.sum()) * passes / elapsed,
            "seqs_per_s": len(lengths) * passes / elapsed,
            "tflops": tflops,
            "mfu": tflops / self.s.peak_tflops if self.s.peak_tflops else None,
            "peak_memory_bytes": peak_memory(device),
            "first_call_s": first_call,
            "attention_kernel": embedder.attention_kernel,
        }
        self.vectors[variant] = embed_table(embedder, table_slice(table, AGREEMENT_ROWS))
        del embedder
        release(device)
        self.results.rows.append(row)
        print(
            f"| {row['model']} | {row['precision']} | {row['path']} | {row['tokens_per_s']:,.0f} "
            f"| {row['seqs_per_s']:,.0f} | {row['tflops']:.1f} | {percent(row['mfu'])} "
            f"| {row['peak_memory_bytes'] / 2**30:.2f} GiB | {first_call:.1f} s | {row['attention_kernel']} |",
            flush=True,
        )
        self.agree()
        return row

    def references_fp32(self) -> None:
        """fp32 vectors of both models on the agreement rows (TF32 off), and the fp32 rates."""
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        for kind in ("dnabert", "esm"):
            if kind in self.references:
                continue
            # DNABERT-S through SDPA: fp32 needs no compiled kernel of its own.
            kernels = KernelChoice(dnabert_attention="sdpa") if kind == "dnabert" else KernelChoice()
            embedder = self.embedder(Variant(kind, "fp32", kernels))
            table = table_slice(self.tables[kind], AGREEMENT_ROWS)
            embed_table(embedder, table_slice(table, 8))
            synchronize(self.s.device)
            start = time.perf_counter()
            self.references[kind] = embed_table(embedder, table)
            self.fp32_rates[kind] = len(table) / (time.perf_counter() - start)
            del embedder
            release(self.s.device)
            print(
                f"fp32 {MODEL_NAMES[kind]}: {self.fp32_rates[kind]:,.1f} sequences/s on {len(table)} sequences"
            )
        self.agree()

    def classifier(self):
        if not hasattr(self, "_classifier"):
            base = np.concatenate([self.references["dnabert"], self.references["esm"]], axis=1)
            if self.classifier_spec:
                from virnucpro.models.classifier_weights import load_classifier

                self._classifier = load_classifier(self.classifier_spec).model
            else:
                self._classifier = calibrated_classifier(torch.from_numpy(base))
        return self._classifier

    def agree(self) -> None:
        """Agreement rows for every measured variant that has none yet (once fp32 exists)."""
        if len(self.references) < 2:
            return
        done = {(a["model"], a["precision"], a["path"]) for a in self.results.agreement}
        base = (self.references["dnabert"], self.references["esm"])
        for variant, got in self.vectors.items():
            key = (MODEL_NAMES[variant.kind], variant.precision, variant.path)
            if key in done or variant.precision == "fp32":
                continue
            other = (got, base[1]) if variant.kind == "dnabert" else (base[0], got)
            row = {
                "model": key[0],
                "precision": key[1],
                "path": key[2],
                "min_cosine": min_cosine(self.references[variant.kind], got),
                "label_agreement": label_agreement(self.classifier(), base, other),
            }
            self.results.agreement.append(row)
            print(f"  agreement {key[0]} {key[1]} {key[2]}: min cosine {row['min_cosine']:.5f}, "
                  f"calls unchanged {row['label_agreement']:.4f}")  # fmt: skip

    def original_loop(self) -> None:
        """The original tool's loop: fp32, one sequence per model call, no padding, each vector moved
        to the host; the ratio is the engine's fp32 rate over the loop's."""
        self.references_fp32()
        for kind in ("dnabert", "esm"):
            kernels = KernelChoice(dnabert_attention="sdpa") if kind == "dnabert" else KernelChoice()
            embedder = self.embedder(Variant(kind, "fp32", kernels))
            table = self.tables[kind]
            rows = [torch.tensor([table.row(i)], device=self.s.device) for i in range(self.s.loop_rows[kind])]
            with torch.inference_mode():
                for ids in rows[:3]:
                    run_one(embedder, ids)
                synchronize(self.s.device)
                start = time.perf_counter()
                for ids in rows:
                    run_one(embedder, ids).cpu()
                rate = len(rows) / (time.perf_counter() - start)
            ratio = self.fp32_rates[kind] / rate
            self.results.original_loop_ratio[MODEL_NAMES[kind]] = ratio
            print(f"engine fp32 vs the original one-sequence loop, {MODEL_NAMES[kind]}: {ratio:.1f}x")
            del embedder
            release(self.s.device)

    def end_to_end(self, precision: str) -> dict:
        """`virnucpro embed` in a subprocess, as a user runs it; the wall time includes everything."""
        write_esm_folder(self.folders["esm"], self.esm_master, with_weights=True)
        shards = self.root / "shards"
        if not shards.exists():
            write_shards(shards, self.s.e2e_frames, max(1, self.s.e2e_frames // 2))
        files = sorted(shards.iterdir())
        outdir = self.root / f"e2e-{precision}"
        env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "HF_HUB_OFFLINE": "1"}
        devices = "cpu" if self.s.device.type == "cpu" else str(self.s.device)
        command = [sys.executable, "-m", "virnucpro", "embed", *map(str, files), "--outdir", str(outdir)]
        command += ["--dnabert-model", str(self.folders["dnabert"]), "--esm-model", str(self.folders["esm"])]
        command += ["--devices", devices, "--workers", "1", "--precision", precision]
        command += ["--dnabert-batch-size", str(self.s.batch["dnabert"])]
        command += ["--esm-tokens-per-batch", str(self.s.batch["esm"])]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(
                f"virnucpro embed failed ({result.returncode}): {result.stderr.strip()[-1500:]}"
            )
        loads = {
            name: float(secs)
            for name, secs in re.findall(r"loaded (\S+) on \S+ in ([0-9.]+) s", result.stderr)
        }
        proteins = [p for p in files if p.name.endswith(".protein.faa")]
        frames = sum(p.read_text().count(">") for p in proteins)
        esm_tokens = sum(len(line) + 2 for p in proteins for line in p.read_text().splitlines()[1::2])
        per_frame = seconds / frames
        row = {
            "precision": precision,
            "devices": devices,
            "frames": frames,
            "esm_tokens_per_frame": esm_tokens / frames,
            "seconds": seconds,
            "frames_per_s": frames / seconds,
            "model_load_s": loads,
            # Full 500 bp frames (about 168 ESM tokens each): an upper bound for broad's subset.
            "projected_broad_s": BROAD_FRAMES * per_frame,
            # Scaled to broad's implied ESM tokens per frame (ESM-2 dominates the time).
            "projected_broad_at_its_tokens_s": BROAD_FRAMES * per_frame * BROAD_ESM_TOKENS_PER_FRAME / (esm_tokens / frames),
            "broad_esm_tokens_per_frame": BROAD_ESM_TOKENS_PER_FRAME,
        }  # fmt: skip
        self.results.end_to_end.append(row)
        print(
            f"| end to end {precision} | {devices} | {frames} frames | {seconds:.1f} s | {row['frames_per_s']:,.0f} "
            f"frames/s | broad: {row['projected_broad_s'] / 60:.1f} min at 500 bp frames, "
            f"{row['projected_broad_at_its_tokens_s'] / 60:.1f} min at its {BROAD_ESM_TOKENS_PER_FRAME:.0f} "
            f"tokens/frame | loads {loads} |",
            flush=True,
        )
        return row

    def gpu_tests(self, log_dir: Path | None, seconds: float) -> None:
        """The GPU tests, in a subprocess with its own time limit; the whole log is kept."""
        tests = [
            "tests/system/test_gpu_paths.py",
            "tests/unit/test_embedding_engine.py",
            "tests/unit/test_pool.py",
        ]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", *tests]
        env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "HF_HUB_OFFLINE": "1"}
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, env=env, cwd=REPO, timeout=max(10.0, seconds - 5)
            )
            output, code = result.stdout + result.stderr, result.returncode
        except subprocess.TimeoutExpired as err:
            output = (
                (err.stdout or b"").decode(errors="replace")
                if isinstance(err.stdout, bytes)
                else (err.stdout or "")
            )
            code = "timeout"
        if log_dir is not None:
            (log_dir / "gpu_tests.log").write_text(output)
        summary = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        print(f"GPU tests: exit {code}: {summary}")
        if code != 0:
            raise RuntimeError(f"GPU tests exit {code}: {summary}")

    # --- choices ---
    def choices(self) -> dict:
        """The fastest acceptable variant of each family, from what was measured."""
        agreement = {(a["model"], a["precision"], a["path"]): a for a in self.results.agreement}

        def acceptable(row) -> bool:
            a = agreement.get((row["model"], row["precision"], row["path"]))
            return (
                a is not None
                and a["label_agreement"] >= ACCEPTED_LABEL_AGREEMENT
                and a["min_cosine"] >= ACCEPTED_MIN_COSINE
            )

        def fastest(rows) -> str | None:
            rows = [r for r in rows if acceptable(r)]
            if not rows:
                return None
            best = max(rows, key=lambda r: r["tokens_per_s"])
            return f"{best['precision']} {best['path']} ({best['tokens_per_s']:,.0f} tokens/s)"

        esm = [r for r in self.results.rows if r["model"] == "esm2"]
        made = {
            "bf16 flavour": fastest([r for r in esm if r["precision"] in ("bf16", "bf16-cast")]),
            "fp8 implementation": fastest([r for r in esm if r["precision"] == "fp8"]),
            "ESM-2 kernel (bf16)": fastest([r for r in esm if r["precision"] == "bf16"]),
            "DNABERT-S kernel (bf16)": fastest(
                [r for r in self.results.rows if r["model"] == "dnabert-s" and r["precision"] == "bf16"]
            ),
        }
        bf16 = max(
            (r["tokens_per_s"] for r in esm if r["precision"] == "bf16" and acceptable(r)), default=None
        )
        fp8 = max((r["tokens_per_s"] for r in esm if r["precision"] == "fp8" and acceptable(r)), default=None)
        made["fp8 over bf16, ESM-2"] = round(fp8 / bf16, 2) if fp8 and bf16 else None
        return made


def run_one(embedder, ids: torch.Tensor) -> torch.Tensor:
    if embedder.kind == "dnabert":
        return embedder.model(ids)[0].mean(dim=0)
    hidden = embedder.model(input_ids=ids).last_hidden_state[0]
    return hidden[1 : min(ids.shape[1] - 2, 1024) + 1].mean(dim=0)


def write_shards(folder: Path, frames: int, per_shard: int) -> list[Path]:
    """Shard pairs as prepare writes them, of real 500 bp chunk frames of coding-like DNA."""
    from virnucpro.method.frames import translate_chunks

    folder.mkdir(parents=True, exist_ok=True)
    dna = open_reading_frames(random.Random(11), frames, 500, 500)  # ~2 stop-free frames each
    kept = [f for chunk in translate_chunks(dna, 500) for f in chunk.frames][:frames]
    paths = []
    for number, start in enumerate(range(0, len(kept), per_shard), start=1):
        part = kept[start : start + per_shard]
        name = folder / f"shard_{number:05d}"
        nucleotide, protein = Path(f"{name}.nucleotide.fa"), Path(f"{name}.protein.faa")
        ids = [f"s{start + i}_chunk_1F1" for i in range(len(part))]
        nucleotide.write_text(
            "".join(f">{i}\n{f.nucleotides.decode()}\n" for i, f in zip(ids, part, strict=True))
        )
        protein.write_text("".join(f">{i}\n{f.protein.decode()}\n" for i, f in zip(ids, part, strict=True)))
        paths += [nucleotide, protein]
    return paths


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def default_choices(settings: Settings) -> dict:
    """What a run with default settings would use on this device (before any measurement)."""
    from virnucpro.embedding.engine import can_compile_kernels
    from virnucpro.models.dnabert_s import DnabertConfig

    config = DnabertConfig(**{**DnabertConfig().to_dict(), **settings.sizes["dnabert"]})
    head_dim = config.hidden_size // config.num_attention_heads
    dnabert = choose_dnabert_attention(head_dim, settings.device, KernelChoice())
    return {
        "bf16": "mixed: bf16 matmuls; residual stream, LayerNorm, softmax, ALiBi and pooling in float32",
        "dnabert_attention": f"{dnabert.attention}{' compiled' if dnabert.compiled else ''}"
        + (f" (fallback: {dnabert.fallback_reason})" if dnabert.fallback_reason else ""),
        "esm_kernel": "sdpa (transformers), eager",
        "fp8": "torch._scaled_mm e4m3, row-wise weight and per-token activation scales, eager quantization",
        "compiler": can_compile_kernels(settings.device.type),
    }


STEPS = {  # number: (name, deadline in seconds on a GPU)
    1: ("dnabert-bf16", 150),
    2: ("esm-bf16", 60),
    3: ("e2e-bf16", 120),
    4: ("agreement", 60),
    5: ("original-loop", 45),
    6: ("fp8", 90),
    7: ("bf16-cast", 60),
    8: ("kernels", 180),
    9: ("e2e-fp8", 90),
}


def step_actions(bench: Bench, settings: Settings) -> dict[int, Callable[[], None]]:
    def rows(*variants: Variant) -> Callable[[], None]:
        def run() -> None:
            failures = []
            for variant in variants:
                check_deadline()
                try:
                    bench.throughput(variant)
                except StepTimeout:
                    raise
                except Exception as err:  # one variant failing must not lose the others' figures
                    check_deadline()
                    failures.append(
                        f"{variant.kind} {variant.precision} {variant.path}: {type(err).__name__}: {err}"
                    )
                    print(
                        f"| {MODEL_NAMES[variant.kind]} | {variant.precision} | {variant.path} | failed: {err!r}"[
                            :600
                        ]
                    )
                bench.results.save()
            if failures:
                raise RuntimeError("; ".join(failures))

        return run

    fused, compiled = KernelChoice(esm_fused_qkv=True), KernelChoice(compile_esm=True)
    both = KernelChoice(esm_fused_qkv=True, compile_esm=True)
    fp8_allowed = fp8_runs_on(settings.device)
    fp8 = (
        rows(
            Variant("esm", "fp8", KernelChoice(), "eager-quantize"),
            Variant("esm", "fp8", KernelChoice(compile_fp8_quantize=True), "compiled-quantize"),
            Variant("esm", "fp8", KernelChoice(esm_fused_qkv=True, compile_fp8_quantize=True), "fused-qkv"),
        )
        if fp8_allowed
        else lambda: print(
            "fp8: needs a Hopper GPU, or on a CPU a torch with row-wise torch._scaled_mm; skipped"
        )
    )

    def e2e_fp8() -> None:
        usable = [
            a
            for a in bench.results.agreement
            if a["precision"] == "fp8" and a["label_agreement"] >= ACCEPTED_LABEL_AGREEMENT
        ]
        if settings.device.type == "cpu" or not usable:
            print("end to end fp8: skipped (no GPU, or no fp8 row agreed with fp32)")
            return
        bench.end_to_end("fp8")

    return {
        1: rows(Variant("dnabert", "bf16")),
        2: rows(Variant("esm", "bf16")),
        3: lambda: bench.end_to_end("bf16"),
        4: bench.references_fp32,
        5: bench.original_loop,
        6: fp8,
        7: rows(Variant("dnabert", "bf16-cast"), Variant("esm", "bf16-cast")),
        8: rows(
            Variant("esm", "bf16", fused, "fused-qkv"),
            Variant("esm", "bf16", compiled, "compiled-layers"),
            Variant("esm", "bf16", both, "fused-qkv+compiled"),
            *([Variant("esm", "fp8", KernelChoice(esm_fused_qkv=True, compile_esm=True), "fused-qkv+compiled")] if fp8_allowed else []),
            Variant("esm", "bf16", KernelChoice(esm_attention="flex_attention"), "flex_attention"),
            Variant("dnabert", "bf16", KernelChoice(dnabert_attention="sdpa"), "sdpa-dense-bias"),
            Variant("dnabert", "fp16"),
        ),
        9: e2e_fp8,
    }  # fmt: skip


def fp8_runs_on(device: torch.device) -> bool:
    """Hopper or newer on CUDA; on the CPU, a torch whose `_scaled_mm` takes row-wise scales (2.11's
    takes one scale per tensor only)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (9, 0)
    from virnucpro.embedding.fp8 import Fp8Linear

    try:
        Fp8Linear(torch.nn.Linear(16, 16))(torch.ones(2, 16))
    except RuntimeError:
        return False
    return True


def parse_steps(text: str) -> list[int]:
    chosen: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        chosen += range(int(low), int(high or low) + 1)
    return [n for n in sorted(set(chosen)) if n in STEPS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU: the same code, quickly")
    parser.add_argument("--json", type=Path, help="write the figures here, after every step")
    parser.add_argument("--logs", type=Path, help="a folder for the full logs (the GPU tests' included)")
    parser.add_argument("--steps", default="1-9", help="which steps, e.g. 1-5 or 1,3 (default all)")
    parser.add_argument("--gpu-tests", action="store_true", help="run the GPU tests after step 5")
    parser.add_argument("--classifier", help="a classifier for label agreement (default: random, calibrated)")
    parser.add_argument(
        "--minutes", type=float, default=5.5, help="time budget; later steps are skipped after it"
    )
    args = parser.parse_args()
    configure_logging(quiet=True)
    started = time.monotonic()

    if args.smoke:
        torch.set_num_threads(1)
        settings = Settings(
            smoke=True, device=torch.device("cpu"), peak_tflops=None,
            sizes={"dnabert": DNABERT_SMOKE, "esm": ESM_SMOKE}, batch={"dnabert": 32, "esm": 4096},
            sequences={"dnabert": 96, "esm": 96}, seconds=0.2, e2e_frames=60, loop_rows={"dnabert": 24, "esm": 24},
        )  # fmt: skip
        name = "cpu (smoke)"
        print("SMOKE RUN: tiny models on CPU; the numbers mean nothing.")
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu.py: no CUDA device visible (use --smoke to run the same code on CPU)")
        name = torch.cuda.get_device_name(0)
        settings = Settings(
            smoke=False, device=torch.device("cuda:0"),
            peak_tflops=next((p for key, p in BF16_PEAK_TFLOPS.items() if key in name), None),
            sizes={"dnabert": DNABERT_FULL, "esm": ESM_3B}, batch={"dnabert": 256, "esm": 16384},
            sequences={"dnabert": 4096, "esm": 1536}, seconds=2.0, e2e_frames=6000,
            loop_rows={"dnabert": 128, "esm": 32},
        )  # fmt: skip
    import transformers

    header = {
        "device": name,
        "gpus": torch.cuda.device_count() if not args.smoke else 0,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "defaults": default_choices(settings),
        "budget_minutes": args.minutes,
    }
    results = Results(args.json, header)
    print(
        f"{name}; python {header['python']}; torch {torch.__version__}; transformers {transformers.__version__}"
    )
    for key, value in header["defaults"].items():
        print(f"  default {key}: {value}")
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="virnucpro-gpu-") as tmp:
        clock = time.perf_counter()
        bench = Bench(settings, Path(tmp), results, args.classifier)
        print(f"models ready in {time.perf_counter() - clock:.1f} s")
        results.save()
        actions = step_actions(bench, settings)
        print(
            "\n| model | precision | path | tokens/s | seqs/s | TFLOP/s | MFU | peak memory | first call | kernels |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for number in parse_steps(args.steps):
            step, limit = STEPS[number]
            limit = limit / 3 if args.smoke else limit
            left = 60 * args.minutes - (time.monotonic() - started)
            if left < min(limit, 30):
                results.steps.append({"step": number, "name": step, "status": "skipped: time budget"})
                print(f"-- step {number} {step}: skipped, {left:.0f} s of the budget left")
                results.save()
                continue
            print(f"-- step {number} {step} (deadline {min(limit, left):.0f} s)", flush=True)
            begun = time.perf_counter()
            try:
                with deadline(min(limit, left)):
                    actions[number]()
                status = "ok"
            except StepTimeout as err:
                status = f"timeout: {err}"
            except Exception as err:  # a step failing must not lose the others' figures
                status = f"failed: {type(err).__name__}: {str(err)[:1500]}"
            with contextlib.suppress(Exception):
                synchronize(settings.device)
            results.steps.append(
                {"step": number, "name": step, "status": status, "seconds": time.perf_counter() - begun}
            )
            if status != "ok":
                print(f"   step {number} {step}: {status[:600]}", flush=True)
            results.save()
            if number == 5 and args.gpu_tests:
                left = 60 * args.minutes - (time.monotonic() - started)
                begun = time.perf_counter()
                try:
                    bench.gpu_tests(args.logs, min(90.0, left))
                    status = "ok"
                except Exception as err:
                    status = f"failed: {str(err)[:600]}"
                results.steps.append(
                    {"step": "gpu-tests", "status": status, "seconds": time.perf_counter() - begun}
                )
                results.save()
        results.choices = bench.choices()
        results.save()
    print("\nchoices the figures support:")
    for key, value in results.choices.items():
        print(f"  {key}: {value}")
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
