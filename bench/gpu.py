"""The device check: full-size DNABERT-S and ESM-2 3B through the embedding engine on one GPU (or
all visible GPUs for the scaling row), every precision and attention path, in one script.

Measures, in one run, with random weights at the real shapes (or real weights given as folders):
- per model, precision and path: tokens/s and sequences/s through the engine's batch loop (host
  padding and the final gather included), MFU against the device's dense bf16 peak, peak device
  memory, the attention kernel used, and the first call's extra time (compilation);
- agreement of every fast mode with fp32: smallest cosine of the vectors, and the share of frames
  whose call through the classifier stays the same (a random classifier calibrated on the fp32
  features unless --classifier is given);
- the ratio to the original tool's one-sequence-at-a-time loop (fp32, as it ran);
- end to end through the real command (`virnucpro embed` on generated shards, start-up, model
  loading, tokenizing and writing included), projected to broad's 794,577 frames; with several GPUs,
  the scaling per added GPU.

Lengths are those of real 500 bp chunk frames: DNABERT-S 110-150 tokens, ESM-2 up to 166 residues.
Optional measurements are skipped (and listed) when the time budget (--minutes, default 8) runs out.

    python bench/gpu.py --json gpu.json                          # on a GPU machine
    python bench/gpu.py --dnabert-model DIR --esm-model DIR      # real weights
    python bench/gpu.py --smoke --json smoke.json                # the same code on CPU, tiny shapes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import numpy as np
import torch

from virnucpro.embedding.agreement import label_agreement, min_cosine
from virnucpro.embedding.batching import TokenTable
from virnucpro.embedding.engine import KernelChoice, embed_table, load_embedder
from virnucpro.progress import configure_logging
from virnucpro.test_models import calibrated_classifier, make_dnabert, open_reading_frames

REPO = Path(__file__).resolve().parents[1]
MODEL_NAMES = {"dnabert": "dnabert-s", "esm": "esm2"}
DNABERT_FULL = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "vocab_size": 4096, "alibi_starting_size": 512,
}  # fmt: skip
ESM_3B = {"hidden_size": 2560, "num_hidden_layers": 36, "num_attention_heads": 40, "intermediate_size": 10240}
DNABERT_SMOKE = {
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 12,
    "intermediate_size": 96,
}
ESM_SMOKE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
# Dense bf16 peak TFLOP/s by GPU name (SXM datasheet figures; H200 and H100 share the chip).
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0}
BROAD_FRAMES = 794_577  # broad's subset, the end-to-end yardstick


@dataclass(frozen=True)
class Variant:
    """One measured configuration of a model."""

    precision: str
    path: str  # a name for the kernel choice
    kernels: KernelChoice


DNABERT_PATHS = {
    "cuda": [
        Variant("bf16", "flex-compiled", KernelChoice()),
        Variant("fp32", "flex-compiled", KernelChoice()),
        Variant("bf16", "sdpa-bias", KernelChoice(dnabert_attention="sdpa")),
        Variant("bf16-cast", "flex-compiled", KernelChoice()),
        Variant("fp16", "flex-compiled", KernelChoice()),
    ],
    "cpu": [
        Variant("bf16", "sdpa-bias", KernelChoice()),
        Variant("fp32", "sdpa-bias", KernelChoice()),
    ],
}
ESM_PATHS = {
    "cuda": [
        Variant("bf16", "sdpa", KernelChoice()),
        Variant("fp32", "sdpa", KernelChoice()),
        Variant("fp8", "sdpa", KernelChoice()),
        Variant("bf16-cast", "sdpa", KernelChoice()),
        Variant("bf16", "flex_attention", KernelChoice(esm_attention="flex_attention")),
        Variant("bf16", "sdpa-compiled", KernelChoice(compile_esm=True)),
    ],
    "cpu": [
        Variant("bf16", "sdpa", KernelChoice()),
        Variant("fp32", "sdpa", KernelChoice()),
    ],
}


class Budget:
    def __init__(self, minutes: float):
        self.deadline = time.monotonic() + 60 * minutes
        self.skipped: list[str] = []

    def allows(self, what: str, needs_seconds: float) -> bool:
        if time.monotonic() + needs_seconds > self.deadline:
            self.skipped.append(what)
            print(f"  (skipped, time budget: {what})", flush=True)
            return False
        return True


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def benchmark_tables(count: int, dnabert_vocab: int, seed: int = 1) -> dict[str, TokenTable]:
    rng = np.random.default_rng(seed)
    dnabert = rng.integers(110, 151, size=count)  # [CLS] + BPE tokens of a 500 bp frame + [SEP]
    esm = 2 + rng.integers(50, 167, size=count)  # <cls> residues <eos>
    return {
        "dnabert": random_table(rng, dnabert, (5, dnabert_vocab), (1, 2)),  # [CLS]=1, [SEP]=2
        "esm": random_table(rng, esm, (4, 24), (0, 2)),  # the 20 amino acids; <cls>=0, <eos>=2
    }


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


def measure(
    kind, folder, device, variant: Variant, table, seconds, peak_tflops, batch
) -> tuple[dict, np.ndarray]:
    """One row: the engine's batch loop over `table`, repeated for at least `seconds`."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    embedder = load_embedder(
        kind,
        folder,
        device,
        variant.precision,
        batch_size=batch,
        tokens_per_batch=batch,
        kernels=variant.kernels,
    )
    warm = time.perf_counter()
    embed_table(embedder, table_slice(table, 64))
    synchronize(device)
    first_call = time.perf_counter() - warm
    passes, start = 0, time.perf_counter()
    while True:
        vectors = embed_table(embedder, table)  # ends with one copy to the host: synchronised
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    lengths = table.lengths
    config = embedder.model.config
    tflops = flops(kind, config, lengths) * passes / elapsed / 1e12
    row = {
        "model": MODEL_NAMES[kind],
        "precision": variant.precision,
        "path": variant.path,
        "tokens_per_s": float(lengths.sum()) * passes / elapsed,
        "seqs_per_s": len(lengths) * passes / elapsed,
        "mfu": tflops / peak_tflops if peak_tflops else None,
        "peak_memory_bytes": peak_memory(device),
        "attention_kernel": embedder.attention_kernel,
        "tflops": tflops,
        "first_call_s": first_call,
    }
    del embedder
    return row, vectors


def table_slice(table: TokenTable, count: int) -> TokenTable:
    count = min(count, len(table))
    return TokenTable(table.flat[: table.offsets[count]], table.offsets[: count + 1])


def original_loop(kind, folder, device, table: TokenTable, count: int, fp32_rate: float) -> float:
    """The original tool's loop: fp32, one sequence per model call, no padding; returns how many
    times faster the engine's fp32 path is."""
    embedder = load_embedder(kind, folder, device, "fp32")
    rows = [torch.tensor([table.row(i)], device=device) for i in range(min(count, len(table)))]
    with torch.inference_mode():
        for ids in rows[:3]:  # warm-up
            run_one(embedder, ids)
        synchronize(device)
        start = time.perf_counter()
        for ids in rows:
            run_one(embedder, ids).cpu()  # the original moved each vector to the host
        elapsed = time.perf_counter() - start
    return fp32_rate / (len(rows) / elapsed)


def run_one(embedder, ids: torch.Tensor) -> torch.Tensor:
    if embedder.kind == "dnabert":
        return embedder.model(ids)[0].mean(dim=0)
    hidden = embedder.model(input_ids=ids).last_hidden_state[0]
    return hidden[1 : min(ids.shape[1] - 2, 1024) + 1].mean(dim=0)


def write_random_esm(folder: Path, sizes: dict, device: torch.device) -> None:
    """A random ESM-2 folder at the given sizes, built on `device` (fast for 3B on a GPU) and saved in
    bf16 (half the disk and load time; the fp32 rows then run on bf16-representable weights)."""
    from safetensors.torch import save_file
    from transformers import EsmConfig, EsmForMaskedLM

    from virnucpro.models.esm2 import quiet_transformers
    from virnucpro.test_models import ESM_CONFIG, ESM_VOCAB

    quiet_transformers()
    folder.mkdir(parents=True, exist_ok=True)
    config = EsmConfig(**{**ESM_CONFIG, **sizes})
    torch.manual_seed(7)
    with torch.device(device):
        model = EsmForMaskedLM(config)
    state = {}
    for name, tensor in model.named_parameters():  # buffers (rotary frequencies) come from the config
        if name.startswith("lm_head."):
            continue  # tied to the embeddings, unused by embedding
        if "layer_norm" not in name.lower() and "layernorm" not in name.lower():
            tensor = tensor.to(torch.bfloat16)
        state[name] = tensor.detach().contiguous().cpu()
    del model
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({**ESM_CONFIG, **sizes, "model_type": "esm"}, indent=2))
    (folder / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")


def write_shards(folder: Path, frames: int, per_shard: int) -> list[Path]:
    """Shard pairs as prepare writes them, of real 500 bp chunk frames of coding-like DNA."""
    from virnucpro.frames import translate_chunks

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


def end_to_end(shards, folders, devices: str, precision: str, outdir: Path, workers: int = 1) -> dict:
    """`virnucpro embed` in a subprocess, as a user runs it; wall time includes everything."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "virnucpro", "embed", *map(str, shards), "--outdir", str(outdir)]
    command += ["--dnabert-model", str(folders["dnabert"]), "--esm-model", str(folders["esm"])]
    command += ["--devices", devices, "--workers", str(workers), "--precision", precision, "--quiet"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"virnucpro embed failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    frames = sum(p.read_text().count(">") for p in shards if p.name.endswith(".nucleotide.fa"))
    return {
        "precision": precision,
        "devices": devices,
        "frames": frames,
        "seconds": seconds,
        "frames_per_s": frames / seconds,
        "projected_broad_s": BROAD_FRAMES * seconds / frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU: the same code, quickly")
    parser.add_argument("--json", type=Path, help="write rows, agreement and ratios to this file")
    parser.add_argument("--dnabert-model", type=Path, help="a DNABERT-S folder (default: random, full size)")
    parser.add_argument("--esm-model", type=Path, help="an ESM-2 folder (default: random 3B)")
    parser.add_argument("--classifier", help="a classifier for label agreement (default: random, calibrated)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3 s)")
    parser.add_argument("--sequences", type=int, default=4096, help="sequences per measurement table")
    parser.add_argument("--e2e-frames", type=int, default=20000, help="frames for the end-to-end rows")
    parser.add_argument(
        "--minutes", type=float, default=7.5, help="time budget; optional rows are skipped after"
    )
    args = parser.parse_args()
    configure_logging(quiet=True)
    logging.getLogger("virnucpro").setLevel(logging.ERROR)
    budget = Budget(args.minutes)

    if args.smoke:
        device, gpus, peak = torch.device("cpu"), 0, None
        torch.set_num_threads(1)
        sizes = {"dnabert": DNABERT_SMOKE, "esm": ESM_SMOKE}
        args.seconds, args.sequences, args.e2e_frames = 0.3, 96, 60
        batches = {"dnabert": 32, "esm": 4096}
        print("SMOKE RUN: tiny models on CPU; the numbers mean nothing.")
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu.py: no CUDA device visible (use --smoke to run the same code on CPU)")
        device, gpus = torch.device("cuda:0"), torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        peak = next((p for key, p in BF16_PEAK_TFLOPS.items() if key in name), None)
        sizes = {"dnabert": DNABERT_FULL, "esm": ESM_3B}
        batches = {"dnabert": 256, "esm": 16384}
        print(f"{gpus} x {name}; torch {torch.__version__}; bf16 peak {peak} TFLOP/s")
    paths = {"dnabert": DNABERT_PATHS[device.type], "esm": ESM_PATHS[device.type]}

    with tempfile.TemporaryDirectory(prefix="virnucpro-gpu-") as tmp:
        root = Path(tmp)
        folders = {"dnabert": args.dnabert_model, "esm": args.esm_model}
        clock = time.perf_counter()
        if folders["dnabert"] is None:
            folders["dnabert"] = root / "dnabert-s"
            make_dnabert(folders["dnabert"], **sizes["dnabert"])
        if folders["esm"] is None:
            folders["esm"] = root / "esm2"
            write_random_esm(folders["esm"], sizes["esm"], device)
        print(f"models ready in {time.perf_counter() - clock:.1f} s")

        vocab = json.loads((folders["dnabert"] / "config.json").read_text())["vocab_size"]
        tables = benchmark_tables(args.sequences, vocab)
        rows, vectors, ratios, agreement, e2e, scaling = [], {}, {}, [], [], None

        def save() -> None:
            """Write what is measured so far (a run stopped by a time limit keeps its figures)."""
            if args.json:
                result = {
                    "device": "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(0),
                    "torch": torch.__version__,
                    "rows": rows,
                    "agreement": agreement,
                    "original_loop_ratio": ratios,
                    "end_to_end": e2e,
                    "scaling": scaling,
                    "skipped": budget.skipped,
                }
                args.json.write_text(json.dumps(result, indent=2) + "\n")

        print(
            "\n| model | precision | path | tokens/s | seqs/s | TFLOP/s | MFU | peak memory | first call | attention |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for kind in ("dnabert", "esm"):
            for index, variant in enumerate(paths[kind]):
                estimate = 4 * args.seconds + (60 if device.type == "cuda" else 5)
                if index >= 2 and not budget.allows(f"{kind} {variant.precision} {variant.path}", estimate):
                    continue
                try:
                    row, got = measure(
                        kind, folders[kind], device, variant, tables[kind], args.seconds, peak, batches[kind]
                    )
                except Exception as err:  # one path failing must not lose the others' figures
                    print(
                        f"| {MODEL_NAMES[kind]} | {variant.precision} | {variant.path} | failed: {err!r}"[
                            :400
                        ]
                    )
                    continue
                rows.append(row)
                vectors[kind, variant.precision, variant.path] = got
                print(
                    f"| {row['model']} | {row['precision']} | {row['path']} | {row['tokens_per_s']:,.0f} "
                    f"| {row['seqs_per_s']:,.0f} | {row['tflops']:.1f} "
                    f"| {percent(row['mfu'])} "
                    f"| {row['peak_memory_bytes'] / 2**30:.2f} GiB | {row['first_call_s']:.1f} s "
                    f"| {row['attention_kernel']} |",
                    flush=True,
                )
            fp32 = next(
                (r for r in rows if r["model"] == MODEL_NAMES[kind] and r["precision"] == "fp32"), None
            )
            if fp32 is not None:
                count = 48 if args.smoke else 256
                ratios[MODEL_NAMES[kind]] = original_loop(
                    kind, folders[kind], device, tables[kind], count, fp32["seqs_per_s"]
                )

        save()
        agreement = agreement_rows(vectors, args.classifier)
        save()
        print("\n| model | precision | path | min cosine vs fp32 | label agreement |\n|---|---|---|---|---|")
        for row in agreement:
            print(
                f"| {row['model']} | {row['precision']} | {row['path']} | {row['min_cosine']:.5f} "
                f"| {row['label_agreement']:.4f} |"
            )
        print("\nengine fp32 vs the original one-sequence loop (fp32): " + ", ".join(
            f"{model} {ratio:.1f}x" for model, ratio in ratios.items()
        ))  # fmt: skip

        shards = write_shards(root / "shards", args.e2e_frames, max(1, args.e2e_frames // 2))
        devices = "cpu" if args.smoke else "cuda:0"
        print("\n| end to end | devices | frames | seconds | frames/s | projected, broad's 794,577 frames |")
        print("|---|---|---|---|---|---|")
        for precision in ("bf16", "fp8") if not args.smoke else ("bf16",):
            if not budget.allows(f"end to end {precision}", 90):
                continue
            try:
                row = end_to_end(shards, folders, devices, precision, root / f"e2e-{precision}")
            except RuntimeError as err:
                print(f"| {precision} | {devices} | failed: {err}"[:600])
                continue
            e2e.append(row)
            save()
            print(
                f"| {precision} | {devices} | {row['frames']} | {row['seconds']:.1f} | {row['frames_per_s']:,.0f} "
                f"| {row['projected_broad_s'] / 60:.1f} min |",
                flush=True,
            )
        if gpus > 1 and e2e and budget.allows("scaling over all GPUs", 90):
            many = end_to_end(shards, folders, "cuda", "bf16", root / "e2e-all")
            scaling = {
                "gpus": gpus,
                "one_gpu_s": e2e[0]["seconds"],
                "all_gpus_s": many["seconds"],
                "per_added_gpu": (e2e[0]["seconds"] / many["seconds"]) / gpus,
            }
            print(f"\nscaling: {gpus} GPUs {many['seconds']:.1f} s vs 1 GPU {e2e[0]['seconds']:.1f} s: "
                  f"{scaling['per_added_gpu']:.2f} of linear")  # fmt: skip
        elif not args.smoke:
            print("\none GPU visible: no scaling row")
    if budget.skipped:
        print("skipped for time: " + "; ".join(budget.skipped))
    save()


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def agreement_rows(vectors: dict, classifier_spec: str | None) -> list[dict]:
    """Each fast mode against fp32 of the same model. Label agreement varies one model's vectors
    (the other stays fp32), frame i being DNABERT-S row i with ESM-2 row i."""
    reference = {kind: v for (kind, precision, _), v in vectors.items() if precision == "fp32"}
    if len(reference) < 2:
        return []
    count = min(len(v) for v in reference.values())
    base = (reference["dnabert"][:count], reference["esm"][:count])
    if classifier_spec:
        from virnucpro.classifier import load_classifier

        classifier = load_classifier(classifier_spec).model
    else:
        classifier = calibrated_classifier(torch.from_numpy(np.concatenate(base, axis=1)))
    rows = []
    for (kind, precision, path), got in vectors.items():
        if precision == "fp32":
            continue
        other = (got[:count], base[1]) if kind == "dnabert" else (base[0], got[:count])
        rows.append(
            {
                "model": MODEL_NAMES[kind],
                "precision": precision,
                "path": path,
                "min_cosine": min_cosine(reference[kind], got),
                "label_agreement": label_agreement(classifier, base, other),
            }
        )
    return rows


if __name__ == "__main__":
    main()
