"""Benchmark of `virnucpro prepare`: throughput against a naive per-codon loop, and peak memory.

    python bench/prepare.py                 # 20 Mbp: prepare vs naive, Mbp/s and ratio
    python bench/prepare.py --sequence-length 300   # the same input cut as short reads
    python bench/prepare.py --memory        # also peak RSS of prepare on 500 Mbp in 5 Mbp sequences

Both implementations run in this process on the same generated input (half gene-like, half random
sequence, so that many frames are kept and written). The naive loop is the original tool's way:
translate every chunk codon by codon with a dict; it runs on the first `--naive-mbp` of the input
(its rate does not depend on the input size) and its output is checked against prepare's.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from Bio.SeqIO.FastaIO import SimpleFastaParser

from virnucpro.method.frames import STANDARD_CODE, chunk_bounds
from virnucpro.stages.prepare import prepare

SENSE_CODONS = sorted(c for c, aa in STANDARD_CODE.items() if aa != "*")


def generate(path: Path, total_bases: int, sequence_length: int, seed: int = 7) -> None:
    """Write `total_bases` as FASTA records of `sequence_length`, 60 columns."""
    rng = random.Random(seed)
    written = 0
    number = 0
    with open(path, "w") as out:
        while written < total_bases:
            number += 1
            length = min(sequence_length, total_bases - written)
            if number % 2:
                codons = [rng.choice(SENSE_CODONS) for _ in range(length // 3 + 1)]
                sequence = "".join(codons)[:length]
            else:
                sequence = "".join(rng.choices("ACGT", k=length))
            out.write(f">seq{number} generated\n")
            for i in range(0, length, 60):
                out.write(sequence[i : i + 60] + "\n")
            written += length


def naive_prepare(path: Path, outdir: Path, chunk_size: int, limit_bases: int) -> int:
    """The original's per-codon loop over chunks; returns the bases processed."""
    complement = {"A": "T", "T": "A", "C": "G", "G": "C"}
    done = 0
    outdir.mkdir(parents=True, exist_ok=True)
    with (
        open(path) as handle,
        open(outdir / "nucleotide.fa", "w") as nucleotide_out,
        open(outdir / "protein.faa", "w") as protein_out,
    ):
        for title, sequence in SimpleFastaParser(handle):
            if done >= limit_bases:
                break
            seq_id = title.split()[0]
            for k, (a, b) in enumerate(chunk_bounds(len(sequence), chunk_size), start=1):
                chunk = sequence[a:b].upper()
                reverse = "".join(complement.get(base, base) for base in reversed(chunk))
                for prefix, strand in (("F", chunk), ("R", reverse)):
                    for offset in range(3):
                        protein = ""
                        for i in range(offset, len(strand) - 2, 3):
                            amino_acid = STANDARD_CODE.get(strand[i : i + 3])
                            if amino_acid is not None:
                                protein += amino_acid
                        if protein and "*" not in protein:
                            frame_id = f"{seq_id}_chunk_{k}{prefix}{offset + 1}"
                            nucleotide_out.write(
                                f">{frame_id}\n{strand[offset : offset + 3 * len(protein) + 1]}\n"
                            )
                            protein_out.write(f">{frame_id}\n{protein}\n")
            done += len(sequence)
    return done


def peak_rss_of_prepare(input_path: Path, outdir: Path) -> tuple[float, float]:
    """Run prepare in a child process; return (its peak RSS in MB, seconds)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]);"
        "from virnucpro.stages.prepare import prepare; prepare(sys.argv[1], sys.argv[2], quiet=True)"
    )
    python_dir = str(Path(__file__).resolve().parents[1] / "python")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(input_path), str(outdir), python_dir], check=True)
    seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mbp", type=float, default=20, help="input size for the throughput run (Mbp)")
    parser.add_argument(
        "--naive-mbp", type=float, default=2, help="how much of it the naive loop runs on (Mbp)"
    )
    parser.add_argument("--sequence-length", type=int, default=10_000, help="bp per generated sequence")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory on a large input")
    parser.add_argument("--memory-mbp", type=float, default=500, help="input size for the memory run (Mbp)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        tmp = Path(tmp)
        input_path = tmp / "input.fa"
        generate(input_path, int(args.mbp * 1e6), args.sequence_length)

        # Best of --repeat runs for each, so that a busy moment on the machine does not decide.
        fast_seconds = naive_seconds = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            summary = prepare(input_path, tmp / "fast", chunk_size=500, quiet=True)
            fast_seconds = min(fast_seconds, time.perf_counter() - start)
            start = time.perf_counter()
            naive_bases = naive_prepare(input_path, tmp / "naive", 500, int(args.naive_mbp * 1e6))
            naive_seconds = min(naive_seconds, time.perf_counter() - start)
        fast_rate = summary.bases / 1e6 / fast_seconds
        naive_rate = naive_bases / 1e6 / naive_seconds

        for naive_name, pattern in (("nucleotide.fa", "*.nucleotide.fa"), ("protein.faa", "*.protein.faa")):
            fast_text = "".join(p.read_text() for p in sorted((tmp / "fast" / "shards").glob(pattern)))
            naive_text = (tmp / "naive" / naive_name).read_text()
            assert naive_text and fast_text.startswith(naive_text), f"naive and prepare {naive_name} differ"

        print(
            f"input: {summary.bases / 1e6:.1f} Mbp in {summary.sequences} sequences, {summary.frames} frames kept"
        )
        print(
            f"prepare : {fast_rate:8.2f} Mbp/s ({summary.bases / 1e6:.1f} Mbp in {fast_seconds:.2f} s, one core)"
        )
        print(f"naive   : {naive_rate:8.2f} Mbp/s ({naive_bases / 1e6:.1f} Mbp in {naive_seconds:.2f} s)")
        print(f"speed-up: {fast_rate / naive_rate:8.1f}x")

    if args.memory:
        with tempfile.TemporaryDirectory(prefix="bench-prepare-mem-") as tmp:
            tmp = Path(tmp)
            big = tmp / "big.fa"
            generate(big, int(args.memory_mbp * 1e6), 5_000_000, seed=11)
            peak_mb, seconds = peak_rss_of_prepare(big, tmp / "out")
            print(
                f"memory  : peak RSS {peak_mb:.0f} MB on {args.memory_mbp:.0f} Mbp in 5 Mbp sequences "
                f"({args.memory_mbp / seconds:.1f} Mbp/s)"
            )


if __name__ == "__main__":
    main()
