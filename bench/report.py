"""Benchmark of `virnucpro report`: seconds and peak memory per million chunks, on synthetic scores,
and what viral regions and confidence tiers add to it.

    python bench/report.py                          # 10^5, 10^6 and 10^7 chunks
    python bench/report.py --chunks 100000 1000000  # chosen sizes
    python bench/report.py --layout reads           # one 150 bp read per chunk (many sequences)
    python bench/report.py --package OTHER/python   # the same inputs through another checkout's code
    python bench/report.py --compare-with OTHER/python   # and check that both write the same bytes
    python bench/report.py --chunks 1000000 --repeat 3 --compare-with OTHER/python   # best of 3 each
    python bench/report.py --layout reads --chunks 1000000 --phases   # and the peak RSS of each step

Each size gets a generated sample in `--workdir` (kept, so later runs reuse it): an input FASTA,
a prepare folder (chunk table, sequence table, prepare.json) and score files of 10,000 frames, as
the pipeline would have written them. The `mixed` layout is half reads (one chunk) and half contigs
of 2 to 60 chunks, some viral, some hosts with a prophage-like stretch; about 35% of frames are
kept. The report runs in a child process, which measures its own peak RSS (the kernel's VmHWM, not
`ru_maxrss`: after exec that keeps the parent's RSS at the fork, here the generated sample) and its
RSS before the report starts (the imports); "MB per M chunks" is the difference per million chunks.
Then it does the work of viral regions and confidence tiers again on the same data, timed piece by
piece (see CHILD), and prints its share of the rest of the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from virnucpro.files.checksums import file_sha256
from virnucpro.files.layout import OUTDIR_MARKER, PREPARE_JSON, PrepareLayout
from virnucpro.files.prepared import CHUNK_FRAMES_COLUMNS, INPUT_SEQUENCES_COLUMNS, PrepareSummary
from virnucpro.files.score_files import write_scores
from virnucpro.method.frames import FRAME_LABELS, FRAME_SETS, chunk_table

CHUNK_SIZE = 500
SHARD_SIZE = 10_000
FRAME_KEPT = 0.35  # chance that a frame is stop-free
_ROWS = 100_000  # table rows formatted at a time
_FRAME_COUNTS = np.array([bin(mask).count("1") for mask in range(64)])

# The report in a child process: its RSS before the report (imports done) and its peak; then, where
# the code has them, the seconds of the work of viral regions and confidence tiers done
# again on the same data: annotate (tiers, regions, their summaries), the region files, the region
# FASTA (the FASTA pass with regions minus one without) and the added columns' text.
CHILD = """
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
try:
    import virnucpro.stages.report as r
    import virnucpro.report.html
    import virnucpro.report.tables as tables
    add_regions_and_tiers = r.add_regions_and_tiers
except ImportError:  # a checkout from before the package was laid out by stage (--compare-with)
    import virnucpro.report as r
    import virnucpro.report_html
    tables = r
    add_regions_and_tiers = getattr(r, "annotate", None)
def rss_kb(field="VmRSS:"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
phases = {}
def measured(name, work):
    def run(*args, **kwargs):
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # the kernel's peak RSS (VmHWM) starts again from the current RSS
        try:
            return work(*args, **kwargs)
        finally:
            phases[name] = (rss_kb("VmHWM:"), rss_kb())
    return run
if sys.argv[6] == "phases":
    import virnucpro.report.html as html
    for module, name in [(r, "read_report_data"), (r, "add_regions_and_tiers"), (r, "check_inputs_prepared")] + [
        (r, name) for name in dir(r) if name.startswith("write_") and name != "write_run_json"
    ] + [(html, "write_html_report")]:
        if hasattr(module, name):
            setattr(module, name, measured(name, getattr(module, name)))
start_kb = rss_kb()
started = time.perf_counter()
data = r.report(sys.argv[2], sys.argv[3], sorted(__import__("glob").glob(sys.argv[4] + "/*.parquet")),
                sys.argv[5], quiet=True)
result = {"seconds": time.perf_counter() - started, "start_kb": start_kb,
          "peak_kb": rss_kb("VmHWM:"), "phases_kb": phases}
if add_regions_and_tiers is not None and sys.argv[6] != "phases":
    from virnucpro.method.regions import call_regions, summarise_regions
    tmp, parts = Path(tempfile.mkdtemp(dir=sys.argv[5])), {}
    def timed(name, work):
        clock = time.perf_counter()
        work()
        parts[name] = time.perf_counter() - clock
    timed("annotate", lambda: add_regions_and_tiers(data, r.ReportOptions(), None, None))
    timed("region files", lambda: tables.write_regions(data, tmp / "r.tsv", tmp / "r.bed"))
    timed("fasta with regions", lambda: tables.write_fastas(data, [Path(sys.argv[2])], tmp / "v.fa", tmp / "r.fa"))
    kept, counted = data.regions, data.sequences.viral_regions
    chunks = data.chunks
    data.regions = summarise_regions(call_regions(np.zeros(len(chunks), bool), chunks.sequence, chunks.start,
        chunks.end, data.sequences.n_chunks, 1, 2), chunks.scored, chunks.max_virus, chunks.called_viral, chunks.tier)
    data.sequences.viral_regions = np.zeros_like(counted)
    timed("fasta without", lambda: tables.write_fastas(data, [Path(sys.argv[2])], tmp / "v.fa", tmp / "r.fa"))
    data.regions, data.sequences.viral_regions = kept, counted
    def columns():
        sequences = data.sequences
        for rows in tables._batches(len(chunks)):
            tables.float32_texts(chunks.margin(rows) if callable(chunks.margin) else chunks.margin[rows]), [tables.TIERS[t] for t in chunks.tier[rows].tolist()]
            tables._optional(chunks.estimated_fdr, rows)
        spans = sequences.spans() if hasattr(sequences, "spans") else ((rows, None) for rows in tables._batches(len(sequences)))
        for rows, chunk_rows in spans:
            counts = sequences.tier_counts[rows] if chunk_rows is None else data.sequence_tiers(rows, chunk_rows)[0]
            tables.share_texts(counts), [tables.KINDS[k] for k in sequences.kind[rows].tolist()]
            [tables.TIERS[t] for t in sequences.tier[rows].tolist()], sequences.viral_regions[rows].tolist()
    timed("added columns", columns)
    parts["region fasta"] = max(0.0, parts.pop("fasta with regions") - parts.pop("fasta without"))
    result["regions_and_tiers"] = parts
print(json.dumps(result))
"""


def sequence_lengths(rng: np.random.Generator, n_chunks: int, layout: str) -> np.ndarray:
    """Lengths whose chunks add up to exactly `n_chunks`."""
    if layout == "reads":
        return np.full(n_chunks, 150, dtype=np.int64)
    counts = np.where(rng.random(n_chunks) < 0.5, 1, rng.integers(2, 61, n_chunks))
    total = np.cumsum(counts)
    last = int(np.searchsorted(total, n_chunks))
    counts = counts[: last + 1]
    counts[-1] -= int(total[last]) - n_chunks
    tail = np.where(counts == 1, rng.integers(150, 501, counts.size), rng.integers(1, 501, counts.size))
    return (counts - 1) * CHUNK_SIZE + tail


def generate(folder: Path, n_chunks: int, layout: str, seed: int = 5, final: Path | None = None) -> None:
    """Write input.fa, prepared/ and scores/ for a sample of `n_chunks` chunks (to be moved to
    `final`, the folder prepare.json names)."""
    rng = np.random.default_rng(seed)
    lengths = sequence_lengths(rng, n_chunks, layout)
    n_sequences = lengths.size
    prefix = "read_" if layout == "reads" else "NODE_"
    ids = [f"{prefix}{i + 1}_length_{length}" for i, length in enumerate(lengths.tolist())]
    sequence, index, start, end = chunk_table(lengths, CHUNK_SIZE)
    chunk_length = end - start
    masks = np.zeros(n_chunks, dtype=np.int64)
    for bit in range(6):
        masks |= (rng.random(n_chunks) < FRAME_KEPT).astype(np.int64) << bit
    masks[chunk_length < 6] = 0

    # Per chunk a log-odds of virus: viral sequences high, others low, prophage-like stretches in
    # a fifth of the longer host contigs.
    kind = rng.choice(3, n_sequences, p=[0.3, 0.6, 0.1])  # 0 viral, 1 others, 2 host with prophage
    n_per_sequence = np.bincount(sequence, minlength=n_sequences)
    first = np.cumsum(n_per_sequence) - n_per_sequence
    logit = np.where(kind[sequence] == 0, 3.0, -3.0) + rng.normal(0.0, 2.0, n_chunks)
    prophage = (kind == 2) & (n_per_sequence >= 20)
    for s in np.flatnonzero(prophage).tolist():
        begin = first[s] + rng.integers(0, n_per_sequence[s] - 12)
        logit[begin : begin + rng.integers(6, 13)] += 6.0

    prepared = PrepareLayout(folder / "prepared")
    scores = folder / "scores"
    prepared.folder.mkdir(parents=True)
    scores.mkdir()
    write_input(folder / "input.fa", ids, lengths, rng)
    with open(prepared.input_sequences, "w") as out:
        out.write("\t".join(INPUT_SEQUENCES_COLUMNS) + "\n")
        out.writelines(
            f"{i}\t{r + 1}\t{length}\t{n}\t1\n"
            for r, (i, length, n) in enumerate(
                zip(ids, lengths.tolist(), n_per_sequence.tolist(), strict=True)
            )
        )
    frames_written = 0
    shard = _ShardBuffer(scores)
    with open(prepared.chunk_frames, "w") as out:
        out.write("\t".join(CHUNK_FRAMES_COLUMNS) + "\n")
        for low in range(0, n_chunks, _ROWS):
            rows = slice(low, low + _ROWS)
            chunk_ids = [
                f"{ids[s]}_chunk_{k}"
                for s, k in zip(sequence[rows].tolist(), index[rows].tolist(), strict=True)
            ]
            out.writelines(
                f"{ids[s]}\t{k}\t{c}\t{a + 1}\t{b}\t{b - a}\t{_FRAME_COUNTS[m]}\t{FRAME_SETS[m]}\n"
                for s, k, c, a, b, m in zip(
                    sequence[rows].tolist(),
                    index[rows].tolist(),
                    chunk_ids,
                    start[rows].tolist(),
                    end[rows].tolist(),
                    masks[rows].tolist(),
                    strict=True,
                )
            )
            frame_ids = [
                c + label
                for c, m in zip(chunk_ids, masks[rows].tolist(), strict=True)
                for bit, label in enumerate(FRAME_LABELS)
                if m >> bit & 1
            ]
            chunk_of_frame = np.repeat(np.arange(len(chunk_ids)), _FRAME_COUNTS[masks[rows]])
            frame_logit = logit[rows][chunk_of_frame] + rng.normal(0.0, 1.0, len(frame_ids))
            virus = (1.0 / (1.0 + np.exp(-frame_logit))).astype(np.float32)
            shard.add(frame_ids, (1.0 - virus).astype(np.float32), virus)
            frames_written += len(frame_ids)
    shard.flush(final=True)
    source = {
        "path": str((final or folder) / "input.fa"),
        "format": "fasta",
        "compressed": False,
        "sha256": file_sha256(folder / "input.fa"),  # read_summary accepts a real hash only
        "records": n_sequences,
    }
    summary = PrepareSummary(
        CHUNK_SIZE, SHARD_SIZE, inputs=[source], sequences=n_sequences, bases=int(lengths.sum()),
        chunks=n_chunks, chunks_without_frames=int((masks == 0).sum()), frames=frames_written,
    )  # fmt: skip
    prepared.summary.write_text(json.dumps(asdict(summary), indent=2) + "\n")


class _ShardBuffer:
    """Collects frames and writes them as score files of SHARD_SIZE rows."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ids: list[str] = []
        self.others: list[np.ndarray] = []
        self.virus: list[np.ndarray] = []
        self.count = 0

    def add(self, ids: list[str], others: np.ndarray, virus: np.ndarray) -> None:
        self.ids.extend(ids)
        self.others.append(others)
        self.virus.append(virus)
        self.flush()

    def flush(self, final: bool = False) -> None:
        others, virus = np.concatenate(self.others or [[]]), np.concatenate(self.virus or [[]])
        while len(self.ids) >= SHARD_SIZE or (final and self.ids):
            self.count += 1
            write_scores(
                self.folder / f"shard_{self.count:05d}.scores.parquet",
                self.ids[:SHARD_SIZE],
                others[:SHARD_SIZE],
                virus[:SHARD_SIZE],
                {"classifier": "synthetic"},
            )
            del self.ids[:SHARD_SIZE]
            others, virus = others[SHARD_SIZE:], virus[SHARD_SIZE:]
        self.others, self.virus = [others], [virus]


def write_input(path: Path, ids: list[str], lengths: np.ndarray, rng: np.random.Generator) -> None:
    """Random A/C/G/T, one line per record, cut from one random buffer (fast to write)."""
    buffer = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, 1 << 20)].tobytes() * 2
    offsets = rng.integers(0, 1 << 20, lengths.size).tolist()
    with open(path, "wb") as out:
        for seq_id, length, offset in zip(ids, lengths.tolist(), offsets, strict=True):
            body = buffer[offset : offset + length]
            while len(body) < length:
                body += buffer[: length - len(body)]
            out.write(b">%s\n%s\n" % (seq_id.encode(), body))


def run_report(package: Path, sample: Path, outdir: Path, phases: bool = False) -> dict:
    """The report in a child process on `package`'s code; its seconds, start and peak RSS (and with
    `phases`, the peak of each step: slower, the extra work of regions and tiers is not redone)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(package), str(sample / "input.fa"), str(sample / "prepared"),
         str(sample / "scores"), str(outdir), "phases" if phases else "total"],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"report failed on {sample}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_outputs(mine: Path, other: Path) -> list[str]:
    """Files (and TSV columns) that differ; a TSV is compared on the columns both wrote."""
    differences = []
    for path in sorted(other.iterdir()):
        # run.json holds times; the folder's record, each file's modification time
        if path.name in ("run.json", OUTDIR_MARKER) or not path.is_file():
            continue
        ours = mine / path.name
        if not ours.exists():
            differences.append(f"{path.name}: not written")
        elif path.suffix == ".tsv":
            differences += [f"{path.name}: {d}" for d in compare_tsv(ours, path)]
        elif ours.read_bytes() != path.read_bytes():
            differences.append(f"{path.name}: bytes differ")
    return differences


def compare_tsv(ours: Path, theirs: Path) -> list[str]:
    with open(ours) as a, open(theirs) as b:
        header_a, header_b = a.readline().rstrip("\n").split("\t"), b.readline().rstrip("\n").split("\t")
        missing = [c for c in header_b if c not in header_a]
        if missing:
            return [f"columns missing: {missing}"]
        take = [header_a.index(c) for c in header_b]
        for number, (line_a, line_b) in enumerate(zip(a, b, strict=True), start=2):
            fields = line_a.rstrip("\n").split("\t")
            if [fields[i] for i in take] != line_b.rstrip("\n").split("\t"):
                return [f"line {number} differs"]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, nargs="+", default=[10**5, 10**6, 10**7], help="sample sizes")
    parser.add_argument("--layout", choices=("mixed", "reads"), default="mixed", help="see above")
    parser.add_argument("--workdir", type=Path, default=None, help="generated samples are kept here")
    parser.add_argument("--package", type=Path, default=Path(__file__).resolve().parents[1] / "python")
    parser.add_argument("--compare-with", type=Path, default=None, help="another checkout's python/ folder")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest counts")
    parser.add_argument(
        "--phases", action="store_true", help="print the peak RSS of each step of the report (its own run)"
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    print(f"samples in {workdir}; code from {args.package}")
    print(f"{'chunks':>10} {'sequences':>10} {'seconds':>8} {'s per M':>8} {'peak MB':>8} {'MB per M':>9}")
    for n_chunks in args.chunks:
        sample = workdir / f"{args.layout}-{n_chunks}"
        if not (sample / "prepared" / PREPARE_JSON).exists():
            started = time.perf_counter()
            partial = sample.with_name(sample.name + ".partial")  # a stopped generation leaves only this
            shutil.rmtree(partial, ignore_errors=True)
            generate(partial, n_chunks, args.layout, final=sample)
            partial.rename(sample)
            print(f"  (generated {sample.name} in {time.perf_counter() - started:.0f} s)")
        sequences = json.loads((sample / "prepared" / PREPARE_JSON).read_text())["sequences"]
        with tempfile.TemporaryDirectory(prefix="out-", dir=workdir) as out:
            # Best of --repeat runs (alternating with --compare-with's), so a busy moment does not decide.
            mine, other = [], []
            for attempt in range(args.repeat):
                mine.append(run_report(args.package, sample, Path(out) / f"mine-{attempt}"))
                if args.compare_with:
                    other.append(run_report(args.compare_with, sample, Path(out) / f"other-{attempt}"))
            result = min(mine, key=lambda r: r["seconds"])
            per_million = 1e6 / n_chunks
            grown_mb = (max(r["peak_kb"] for r in mine) - result["start_kb"]) / 1024
            print(
                f"{n_chunks:>10} {sequences:>10} {result['seconds']:>8.2f} "
                f"{result['seconds'] * per_million:>8.2f} {max(r['peak_kb'] for r in mine) / 1024:>8.0f} "
                f"{grown_mb * per_million:>9.1f}"
            )
            if "regions_and_tiers" in result:
                extra = sum(result["regions_and_tiers"].values())
                print(
                    f"{'':>10} regions and tiers: {extra:.2f} s of {result['seconds']:.2f} s, "
                    f"{100 * extra / (result['seconds'] - extra):.1f}% added to the rest of the report ("
                    + ", ".join(
                        f"{name} {seconds:.2f} s" for name, seconds in result["regions_and_tiers"].items()
                    )
                    + ")"
                )
            if args.phases:
                steps = run_report(args.package, sample, Path(out) / "phases", phases=True)["phases_kb"]
                print(
                    f"{'':>10} peak RSS by step, MB: "
                    + ", ".join(
                        f"{name} {peak / 1024:.0f} ({after / 1024:.0f} after)"
                        for name, (peak, after) in steps.items()
                    )
                )
            if args.compare_with:
                best = min(other, key=lambda r: r["seconds"])
                differences = compare_outputs(Path(out) / "mine-0", Path(out) / "other-0")
                print(
                    f"{'':>10} {args.compare_with}: {best['seconds']:.2f} s (this code: "
                    f"{100 * (result['seconds'] / best['seconds'] - 1):+.1f}%), peak "
                    f"{max(r['peak_kb'] for r in other) / 1024:.0f} MB; outputs "
                    + ("identical" if not differences else "DIFFER: " + "; ".join(differences))
                )


if __name__ == "__main__":
    main()
