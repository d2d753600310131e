"""Full-size DNABERT-S and ESM-2 3B (random weights) on GPUs: sequences/s, tokens/s, estimated
MFU, fp32 vs bf16, a batch-size sweep, and 1 vs all GPUs through the worker pool.

Inputs have the lengths of real 500 bp chunk frames (DNABERT-S: ~100 BPE tokens; ESM-2: 50-166
residues), padded and pooled exactly as `virnucpro embed-*` does. fp32 runs with TF32 off, as the
pipeline does. Prints Markdown tables; finishes in about 5 minutes on one H200.

    python bench/gpu.py            # on a machine with CUDA GPUs
    python bench/gpu.py --smoke    # tiny models on CPU: checks that the script runs
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import torch

from virnucpro.embedding.batching import batches_by_count, batches_by_tokens, masked_mean, pad_right
from virnucpro.embedding.pool import embed_files
from virnucpro.models.dnabert_s import DnabertConfig, DnabertModel
from virnucpro.progress import configure_logging
from virnucpro.test_models import ESM_CONFIG, make_dnabert

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
ESM_SMOKE = {"hidden_size": 40, "num_hidden_layers": 2, "num_attention_heads": 5, "intermediate_size": 80}
# Dense peak TFLOP/s by GPU name (SXM figures; fp32 without TF32 is the CUDA-core rate).
PEAK_TFLOPS = {"H200": {"fp32": 66.9, "bf16": 989.4}, "H100": {"fp32": 66.9, "bf16": 989.4}}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def dnabert_lengths(rng: random.Random, count: int) -> list[int]:
    # [CLS] + ~5 bp per BPE token over 300-501 bp frame nucleotides + [SEP].
    return [2 + rng.randint(300, 501) // 5 for _ in range(count)]


def esm_lengths(rng: random.Random, count: int) -> list[int]:
    return [2 + rng.randint(50, 166) for _ in range(count)]  # <cls> residues <eos>


def flops_per_sequence(layers: int, hidden: int, intermediate: int, length: int, gated: bool) -> float:
    """Forward FLOPs of one encoder pass: the matmuls (2 per multiply-add) plus attention scores."""
    mlp = (3 if gated else 2) * hidden * intermediate
    per_token = 2 * layers * (4 * hidden * hidden + mlp)
    return per_token * length + 4 * layers * hidden * length * length


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(forward, batches, device, min_seconds: float, min_batches: int) -> tuple[float, int, int]:
    """Seconds, sequences and real tokens over repeated passes through `batches` (one warm-up)."""
    forward(*batches[0])
    synchronize(device)
    done_sequences = done_tokens = calls = 0
    start = time.perf_counter()
    while True:
        for ids, mask in batches:
            forward(ids, mask)
            done_sequences += ids.shape[0]
            done_tokens += int(mask.sum())
            calls += 1
            if calls >= min_batches and time.perf_counter() - start >= min_seconds:
                break
        else:
            continue
        break
    synchronize(device)
    return time.perf_counter() - start, done_sequences, done_tokens


def make_batches(lengths, plan, vocab: tuple[int, int], pad_id: int, device, rng: random.Random):
    batches = []
    for batch in plan:
        tokens = [[rng.randint(*vocab) for _ in range(lengths[i])] for i in batch]
        ids, mask = pad_right(tokens, pad_id)
        batches.append((ids.to(device), mask.to(device)))
    return batches


def row(model, precision, size, seconds, sequences, tokens, flops, peak) -> str:
    tflops = flops / seconds / 1e12
    mfu = f"{100 * tflops / peak:.1f}%" if peak else "n/a"
    return (
        f"| {model} | {precision} | {size} | {sequences / seconds:,.0f} | {tokens / seconds:,.0f} "
        f"| {tflops:.1f} | {mfu} |"
    )


def bench_dnabert(device, sizes, batch_sizes, precisions, peaks, args, rng) -> list[str]:
    config = DnabertConfig(**{**DnabertConfig().to_dict(), **sizes})
    lines = []
    for precision in precisions:
        model = DnabertModel(config).to(device=device, dtype=DTYPES[precision]).eval()
        for size in batch_sizes:
            lengths = dnabert_lengths(rng, size * args.batches)
            batches = make_batches(
                lengths, batches_by_count(lengths, size), (5, config.vocab_size - 1), 3, device, rng
            )

            @torch.inference_mode()
            def forward(ids, mask, model=model):
                return masked_mean(model(ids, mask), mask)

            seconds, sequences, tokens = measure(forward, batches, device, args.min_seconds, args.batches)
            per_pass = sum(
                flops_per_sequence(
                    config.num_hidden_layers, config.hidden_size, config.intermediate_size, n, True
                )
                for n in lengths
            )
            flops = per_pass * sequences / len(lengths)
            lines.append(
                row("DNABERT-S", precision, size, seconds, sequences, tokens, flops, peaks.get(precision))
            )
            print(lines[-1], flush=True)
        del model
        release(device)
    return lines


def bench_esm(device, sizes, budgets, precisions, peaks, args, rng) -> list[str]:
    from transformers import EsmConfig, EsmModel

    from virnucpro.models.esm2 import attention_implementation, quiet_transformers

    quiet_transformers()
    config = EsmConfig(**{**ESM_CONFIG, **sizes})
    config._attn_implementation = attention_implementation()
    lines = []
    with torch.device(device):
        base = EsmModel(config, add_pooling_layer=False).eval()
    for precision in precisions:
        model = base.to(DTYPES[precision])
        for budget in budgets:
            lengths = esm_lengths(rng, max(8, budget // 100) * args.batches)
            plan = batches_by_tokens(lengths, budget)[: args.batches]
            batches = make_batches(lengths, plan, (4, 23), 1, device, rng)
            used = [lengths[i] for batch in plan for i in batch]

            @torch.inference_mode()
            def forward(ids, mask, model=model):
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                residues = mask.clone()
                residues[:, 0] = 0
                residues[torch.arange(len(mask), device=mask.device), mask.sum(dim=1) - 1] = 0
                return masked_mean(hidden, residues)

            seconds, sequences, tokens = measure(forward, batches, device, args.min_seconds, len(batches))
            per_pass = sum(
                flops_per_sequence(
                    config.num_hidden_layers, config.hidden_size, config.intermediate_size, n, False
                )
                for n in used
            )
            flops = per_pass * sequences / len(used)
            label = f"{budget} tokens"
            lines.append(
                row("ESM-2 3B", precision, label, seconds, sequences, tokens, flops, peaks.get(precision))
            )
            print(lines[-1], flush=True)
    del base, model
    release(device)
    return lines


def release(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_pool(sizes, sequences: int, shards: int, gpus: int, smoke: bool) -> list[str]:
    """Wall time of `embed_files` over the same shards with 1 worker, then one per GPU."""
    rng = random.Random(3)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dnabert(root / "model", **sizes)
        paths = []
        per_shard = sequences // shards
        for n in range(shards):
            path = root / f"shard_{n + 1:05d}.nucleotide.fa"
            records = (
                f">s{n}_{i}\n{''.join(rng.choices('ACGT', k=rng.randint(300, 501)))}\n"
                for i in range(per_shard)
            )
            path.write_text("".join(records))
            paths.append(path)
        settings = (
            [("cpu", 1), ("cpu", 2)] if smoke else [("cuda:0", 1)] + ([("cuda", gpus)] if gpus > 1 else [])
        )
        results = {}
        for devices, workers in settings:
            out = root / f"out-{workers}"
            start = time.perf_counter()
            embed_files(
                "dnabert", paths, out, str(root / "model"), devices=devices, workers=workers, quiet=True
            )
            results[workers] = time.perf_counter() - start
            rate = per_shard * shards / results[workers]
            lines.append(
                f"| DNABERT-S pool, fp32 | {devices} | {workers} | {rate:,.0f} | {results[workers]:.1f} |"
            )
            print(lines[-1], flush=True)
        if len(results) == 2:
            lines.append(f"\n{max(results)} vs 1 worker(s): {results[1] / results[max(results)]:.2f}x")
        else:
            lines.append("\nOne GPU visible: no multi-GPU row.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models on CPU, to check that the script runs"
    )
    parser.add_argument("--min-seconds", type=float, default=2.0, help="time per measurement (default 2 s)")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches per measurement (default 4)")
    parser.add_argument("--skip-esm", action="store_true", help="leave out ESM-2 3B")
    parser.add_argument("--pool-sequences", type=int, default=40000, help="sequences for the pool run")
    args = parser.parse_args()
    configure_logging(quiet=True)
    logging.getLogger("virnucpro").setLevel(logging.ERROR)
    rng = random.Random(1)

    if args.smoke:
        device, gpus, peaks = torch.device("cpu"), 0, {}
        dnabert_sizes, esm_sizes = DNABERT_SMOKE, ESM_SMOKE
        batch_sizes, budgets = [8, 16], [1024, 2048]
        args.min_seconds, args.batches, args.pool_sequences = 0.2, 2, 200
        print("SMOKE RUN: tiny models on CPU; the numbers mean nothing.")
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu.py: no CUDA device visible (use --smoke to check the script on CPU)")
        device, gpus = torch.device("cuda:0"), torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        peaks = next((p for key, p in PEAK_TFLOPS.items() if key in name), {})
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        dnabert_sizes, esm_sizes = DNABERT_FULL, ESM_3B
        batch_sizes, budgets = [64, 128, 256, 512, 1024], [4096, 8192, 16384, 32768]
        print(f"{gpus} x {name}; torch {torch.__version__}; TF32 off; peaks (TFLOP/s): {peaks or 'unknown'}")

    print("\n| model | precision | batch | sequences/s | tokens/s | TFLOP/s | est. MFU |")
    print("|---|---|---|---|---|---|---|")
    bench_dnabert(device, dnabert_sizes, batch_sizes, ["fp32", "bf16"], peaks, args, rng)
    if not args.skip_esm:
        bench_esm(device, esm_sizes, budgets, ["fp32", "bf16"], peaks, args, rng)
    pool_sizes = DNABERT_SMOKE if args.smoke else DNABERT_FULL
    print("\n| pool | --devices | workers | sequences/s | seconds (incl. start-up) |\n|---|---|---|---|---|")
    for line in bench_pool(pool_sizes, args.pool_sequences, 8, gpus, args.smoke):
        if line.startswith("\n"):
            print(line)


if __name__ == "__main__":
    main()
