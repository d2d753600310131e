"""Embedding on CPU: batched (this package) vs one-at-a-time (the original tool's loop), for
DNABERT-S and ESM-2 at a medium size with random weights, and 1 vs 2 workers through the pool.

Prints sequences/s and ratios measured in this one run; no result is asserted. The batched path
embeds a shard-sized set (batches of 256 length-sorted sequences, as in real shards); the
one-at-a-time loop runs over a subset of it (same length distribution) and the two are compared
row by row on that subset.

    .venv/bin/python bench/embed.py                                # 1024 frames, loop over 128
    .venv/bin/python bench/embed.py --sequences 512 --single 64    # quicker
    .venv/bin/python bench/embed.py --host-only                    # the host path alone, per core

`--host-only` replaces the models by a no-op of the real widths (768 and 2560 values) and runs a
worker's host work on one core: read the shard pair, tokenize (DNABERT-S BPE at the real
vocabulary size, ESM-2 letters), plan and pad the batches, gather the vectors, write both Parquet
files. It prints frames/s and tokens/s per core and how many cores one GPU needs at the goal rates.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' thread pool: one core, as measured

import numpy as np
import torch

from virnucpro.embedding.engine import embed_sequences, load_embedder
from virnucpro.embedding.options import EmbeddingOptions
from virnucpro.embedding.pool import embed_files
from virnucpro.method.frames import translate_chunks
from virnucpro.models.batching import batches_by_count, batches_by_tokens
from virnucpro.models.esm2 import MAX_POOLED_RESIDUES
from virnucpro.models.tiny import make_dnabert, make_esm, open_reading_frames
from virnucpro.progress import configure_logging

# Medium: a quarter of the real widths, 4-6 layers; the real tokenizers' types and all quirks.
DNABERT_MEDIUM = {"hidden_size": 192, "num_hidden_layers": 4, "intermediate_size": 768, "vocab_size": 4096}
ESM_MEDIUM = {
    "hidden_size": 320,
    "num_hidden_layers": 6,
    "num_attention_heads": 20,
    "intermediate_size": 1280,
}


def frames(count: int) -> tuple[list[str], list[str]]:
    """Kept frames of 500 bp chunks of coding-like DNA: realistic lengths for both models."""
    dna = open_reading_frames(random.Random(7), count, 500, 3000)
    kept = [f for chunk in translate_chunks(dna, 500) for f in chunk.frames][:count]
    return [f.nucleotides.decode() for f in kept], [f.protein.decode() for f in kept]


def one_at_a_time(embedder, sequences: list[str]) -> np.ndarray:
    """The original tool's loop: each sequence alone, no padding, mean of its rows."""
    rows = []
    with torch.inference_mode():
        for sequence in sequences:
            ids = torch.tensor([embedder.encode_table([sequence]).row(0)])
            if embedder.kind == "dnabert":
                rows.append(embedder.model(ids)[0].mean(dim=0).numpy())
            else:
                hidden = embedder.model(input_ids=ids).last_hidden_state[0]
                rows.append(hidden[1 : min(len(sequence), MAX_POOLED_RESIDUES) + 1].mean(dim=0).numpy())
    return np.stack(rows)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def write_shards(folder: Path, sequences: list[str], shards: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(sequences) // shards)
    paths = []
    for n in range(shards):
        path = folder / f"shard_{n + 1:05d}.nucleotide.fa"
        path.write_text(
            "".join(f">f{n}_{i}\n{s}\n" for i, s in enumerate(sequences[n * size : (n + 1) * size]))
        )
        paths.append(path)
    return paths


class NoOpModel:
    """Stands in for a model: right shapes, no arithmetic, so only the host path is timed."""

    def __init__(self, kind: str, tokenizer, dim: int, batch_size: int, tokens_per_batch: int):
        self.kind, self.tokenizer, self.dim = kind, tokenizer, dim
        self.device, self.pad_id = torch.device("cpu"), 1 if kind == "esm" else 3
        self.batch_size, self.tokens_per_batch = batch_size, tokens_per_batch

    def encode_table(self, sequences):
        return self.tokenizer.encode_table(list(sequences))

    def batches(self, lengths):
        if self.kind == "dnabert":
            return batches_by_count(lengths, self.batch_size)
        return batches_by_tokens(lengths, self.tokens_per_batch)

    def pooled(self, ids, mask):
        return torch.zeros((ids.shape[0], self.dim), dtype=torch.float32)


GOALS = {"dnabert": ("frames/s", 15_000), "esm": ("tokens/s", 100_000)}


def host_only(frames_count: int) -> None:
    from virnucpro.embedding.engine import embed_table, load_tokenizer
    from virnucpro.files.embedding_files import write_embeddings
    from virnucpro.files.shards import read_shard

    nucleotides, proteins = frames(frames_count)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dnabert(root / "dnabert", **DNABERT_MEDIUM)  # the real vocabulary size: 4096 BPE tokens
        make_esm(root / "esm", **ESM_MEDIUM)
        files = {"dnabert": root / "shard_00001.nucleotide.fa", "esm": root / "shard_00001.protein.faa"}
        ids = [f"seq{i}_chunk_1F1" for i in range(len(nucleotides))]
        for kind, data in (("dnabert", nucleotides), ("esm", proteins)):
            files[kind].write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, data, strict=True)))
        print(
            f"host path alone, one core (torch and tokenizers single-threaded), {len(ids)} frames of 500 bp chunks:"
        )
        for kind, dim in (("dnabert", 768), ("esm", 2560)):
            model = NoOpModel(kind, load_tokenizer(kind, root / kind), dim, 256, 16384)
            stages = {}
            start = time.perf_counter()
            names, sequences = read_shard(files[kind])
            stages["read"] = time.perf_counter() - start
            table, stages["tokenize"] = timed(model.encode_table, sequences)
            vectors, stages["pad + batch loop"] = timed(embed_table, model, table)
            _, stages["write"] = timed(
                write_embeddings, root / f"out.{kind}.parquet", names, vectors, {"x": "y"}
            )
            total = sum(stages.values())
            tokens = int(table.lengths.sum())
            unit, goal = GOALS[kind]
            rate = len(names) / total if unit == "frames/s" else tokens / total
            detail = ", ".join(f"{k} {1e6 * v / len(names):.1f}" for k, v in stages.items())
            print(
                f"  {kind:<8} {len(names) / total:>9,.0f} frames/s, {tokens / total:>11,.0f} tokens/s per core "
                f"({tokens / len(names):.0f} tokens per frame; µs per frame: {detail}); goal {goal:,} {unit} "
                f"needs {goal / rate:.1f} cores"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host-only", action="store_true", help="the host path alone, models replaced by a no-op"
    )
    parser.add_argument("--sequences", type=int, default=1024, help="frames embedded batched (default 1024)")
    parser.add_argument("--single", type=int, default=128, help="of which one at a time (default 128)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the in-process comparison (default 1, as one pool worker uses); on a busy "
        "machine more threads mostly measure OpenMP waiting for a core",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configure_logging(quiet=True)
    logging.getLogger("virnucpro").setLevel(logging.ERROR)
    if args.host_only:
        host_only(max(args.sequences, 20000))
        return
    nucleotides, proteins = frames(args.sequences)
    print(f"torch threads: {torch.get_num_threads()}; {len(nucleotides)} frames of 500 bp chunks")
    print(f"{'model':<22} {'one-at-a-time seq/s':>20} {'batched seq/s':>14} {'ratio':>7} {'max |diff|':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dnabert(root / "dnabert", **DNABERT_MEDIUM)
        make_esm(root / "esm", **ESM_MEDIUM)
        for kind, folder, data, label in (
            ("dnabert", root / "dnabert", nucleotides, "DNABERT-S (medium)"),
            ("esm", root / "esm", proteins, "ESM-2 (medium)"),
        ):
            embedder = load_embedder(kind, folder, batch_size=256, tokens_per_batch=16384)
            embed_sequences(embedder, data[:8])  # warm-up
            subset = data[: args.single]
            single, t_single = timed(one_at_a_time, embedder, subset)
            batched, t_batched = timed(embed_sequences, embedder, data)
            diff = float(np.abs(single - batched[: len(subset)]).max())
            single_rate, batched_rate = len(subset) / t_single, len(data) / t_batched
            ratio = batched_rate / single_rate
            print(f"{label:<22} {single_rate:>20.1f} {batched_rate:>14.1f} {ratio:>6.2f}x {diff:>11.2e}")

        print("\nDNABERT-S (medium) batched, by --batch-size:", end="")
        for size in (16, 64, 256):
            embedder = load_embedder("dnabert", root / "dnabert", batch_size=size)
            _, seconds = timed(embed_sequences, embedder, nucleotides)
            print(f"  {size}: {len(nucleotides) / seconds:.1f} seq/s", end="", flush=True)
        print("\nESM-2 (medium) batched, by --tokens-per-batch:", end="")
        for budget in (1024, 4096, 16384):
            embedder = load_embedder("esm", root / "esm", tokens_per_batch=budget)
            _, seconds = timed(embed_sequences, embedder, proteins)
            print(f"  {budget}: {len(proteins) / seconds:.1f} seq/s", end="", flush=True)
        print()

        shards = write_shards(root / "shards", nucleotides, shards=4)
        total = len(nucleotides)
        print(f"\npool, DNABERT-S (medium), {total} sequences in 4 shards, 1 thread per worker:")
        seconds = {}
        for workers in (1, 2):
            out = root / f"out{workers}"
            _, seconds[workers] = timed(
                lambda w=workers, o=out: embed_files(
                    "dnabert",
                    shards,
                    o,
                    EmbeddingOptions(dnabert_model=str(root / "dnabert"), devices="cpu", workers=w),
                    quiet=True,
                )
            )
            rate = total / seconds[workers]
            print(f"  {workers} worker(s): {rate:.1f} seq/s ({seconds[workers]:.1f} s incl. start-up)")
        same = all((root / "out1" / p.name).read_bytes() == p.read_bytes() for p in (root / "out2").iterdir())
        print(f"  2 vs 1 workers: {seconds[1] / seconds[2]:.2f}x; files byte-identical: {same}")


if __name__ == "__main__":
    main()
