"""Scale benchmark: synthetic 150 bp reads through `virnucpro run` with the test models, and a no-op
rerun, at 10^5, 10^6 (and, optional, 10^7) reads; then one input (20,000 reads) cut into 33 to 10,000 shards.

For each size it prints, per stage (prepare, embedding and scoring in the workers, report) and for
the no-op rerun: seconds, peak RSS, and the files and bytes the run leaves on disk per million
frames (bytes of kept embeddings also projected to the real widths, 768 + 2560 float32 values a
frame); and the ratio of each figure to the previous size's. Peak RSS is sampled every 20 ms over
the whole process tree (the run and its workers) and attributed to the stage its log lines say is
running; "parent" is the run's own process.

    python bench/scale.py                                   # 10^5 and 10^6 reads, then the shard series
    python bench/scale.py --reads 100000 1000000 10000000 --bench-scores-from 10000000
                                                            # 10^7 too, its scores written by the bench
    python bench/scale.py --shards-only                     # the shard series alone

Reads are coding-like DNA (sense codons, half reverse-complemented), so chunks keep stop-free
frames as genes do; the run reports how many frames per read were kept.

Embedding 10^7 reads with the test models on 2 CPU cores would take about 5 hours (1,717 s for
10^6). From `--bench-scores-from READS` on, the bench makes what the workers would: it runs
`virnucpro prepare` into the run's work folder, then writes each shard's scores file with the
package's own writer and the provenance a worker records (the same models, classifier and shard
hashes; scores drawn at random, fixed seed), and checks that the run's resume check takes every
shard as done. `virnucpro run` then does what it does after embedding (its report, on real files)
and the no-op rerun is the real one; only the embedding stage's seconds are missing from that row.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

READ_LENGTH = 150
REAL_WIDTH = 768 + 2560  # DNABERT-S + ESM-2 3B values per frame
SHARD_COUNTS = (33, 100, 1_000, 1_100, 10_000)  # the shard series: one input cut into about this many shards


def write_reads(path: Path, count: int, seed: int = 5) -> None:
    """`count` reads of READ_LENGTH bp made of sense codons, every other one reverse-complemented."""
    sense = np.array(
        [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in ("TAA", "TAG", "TGA")]
    )
    codons = np.frombuffer("".join(sense).encode(), dtype=np.uint8).reshape(len(sense), 3)
    complement = np.zeros(256, dtype=np.uint8)
    for a, b in zip(b"ACGT", b"TGCA", strict=True):
        complement[a] = b
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for low in range(0, count, 200_000):
            n = min(200_000, count - low)
            bases = codons[rng.integers(0, len(sense), size=(n, READ_LENGTH // 3))].reshape(n, READ_LENGTH)
            bases[1::2] = complement[bases[1::2, ::-1]]
            lines = [b">r%d\n%s\n" % (low + i, row.tobytes()) for i, row in enumerate(bases)]
            out.write(b"".join(lines))
    tmp.replace(path)


class TreeSampler:
    """RSS of a process and its descendants, every 20 ms, each sample tagged with the current stage."""

    def __init__(self, pid: int):
        self.pid = pid
        self.stage = "prepare"
        self.peaks: dict[str, tuple[int, int]] = {}  # stage: (tree peak, parent peak), bytes
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    todo += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
            except OSError:
                pass
        return pids

    @staticmethod
    def rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.done.is_set():
            pids = self.tree()
            parent = self.rss(self.pid)
            total = parent + sum(self.rss(p) for p in pids[1:])
            tree_peak, parent_peak = self.peaks.get(self.stage, (0, 0))
            self.peaks[self.stage] = (max(tree_peak, total), max(parent_peak, parent))
            time.sleep(0.02)


STAGE_OF_LINE = [  # the stage a log line says has begun
    (re.compile(r"embedding (\d+ shard|: )"), "embed+score"),
    (re.compile(r"worker \d+:"), "embed+score"),
    (re.compile(r"virnucpro INFO report: from "), "report"),
]


def run_virnucpro(args: list[str], models: Path) -> tuple[float, dict, str]:
    """`virnucpro run ARGS` with the test models; (seconds, peaks by stage, stderr)."""
    command = [sys.executable, "-m", "virnucpro", "run", *args]
    command += ["--dnabert-model", str(models / "dnabert-s"), "--esm-model", str(models / "esm2")]
    command += ["--classifier", str(models / "classifier"), "--devices", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(process.pid)
    lines = []
    for line in process.stderr:
        lines.append(line)
        for pattern, stage in STAGE_OF_LINE:
            if pattern.search(line):
                sampler.stage = stage
        if re.search(r"virnucpro INFO report: \d", line):
            sampler.stage = "after"
    process.wait()
    seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.thread.join()
    stderr = "".join(lines)
    if process.returncode != 0:
        raise SystemExit(f"virnucpro run failed ({process.returncode}):\n{stderr[-3000:]}")
    return seconds, sampler.peaks, stderr


def disk_use(outdir: Path) -> dict[str, tuple[int, int]]:
    """(files, bytes) by part of the run folder."""
    parts = {
        "shards": outdir / "work" / "prepare" / "shards",
        "prepare tables": outdir / "work" / "prepare",
        "scores": outdir / "work" / "scores",
        "embeddings": outdir / "work" / "embeddings",
        "final outputs": outdir,
    }
    use = {}
    for name, folder in parts.items():
        files = (
            [p for p in folder.iterdir() if p.is_file()]
            if name in ("prepare tables", "final outputs")
            else list(folder.glob("*"))
            if folder.is_dir()
            else []
        )
        use[name] = (len(files), sum(p.stat().st_size for p in files))
    return use


def write_bench_scores(
    inputs: Path, outdir: Path, models: Path, workers: int
) -> tuple[float, tuple[int, int]]:
    """Start `virnucpro run` and stop it (SIGINT, as a user's Ctrl-C) once prepare has finished and
    embedding begins; then write every shard's scores file as an embedding worker would (see the
    module's docstring), recorded in the scores folder's record as the run's own writes are; refuse
    to go on unless the run's own resume check takes every shard as done. Returns the stopped
    run's seconds to the start of embedding (imports included) and its peak RSS (tree, parent)."""
    import signal

    from virnucpro.embedding.jobs import EmbedJob, FileTask, ShardTask
    from virnucpro.embedding.options import EmbeddingOptions
    from virnucpro.embedding.pool import Scoring, model_job
    from virnucpro.files.checksums import file_sha256
    from virnucpro.files.layout import PrepareLayout, RunLayout, scores_file
    from virnucpro.files.ownership import track
    from virnucpro.files.score_files import score_provenance, write_scores
    from virnucpro.models.classifier_weights import load_classifier

    layout = RunLayout(outdir)
    clock = time.perf_counter()
    command = [sys.executable, "-m", "virnucpro", "run", str(inputs), "--outdir", str(outdir)]
    command += ["--dnabert-model", str(models / "dnabert-s"), "--esm-model", str(models / "esm2")]
    command += ["--classifier", str(models / "classifier"), "--devices", "cpu", "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "HF_HUB_OFFLINE": "1"}
    # A bench started in the background (`nohup ... &`) inherits SIGINT ignored, and so would the
    # run: it would embed everything instead of stopping. Handled here, it is default after exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(process.pid)
    for line in process.stderr:
        if STAGE_OF_LINE[0][0].search(line):
            process.send_signal(signal.SIGINT)
            break
    prepare_seconds = time.perf_counter() - clock
    sampler.done.set()
    sampler.thread.join()
    process.stderr.read()
    if process.wait() != 130:  # what an interrupted run exits with
        raise SystemExit(
            f"{outdir}: `virnucpro run` was not stopped by SIGINT (exit status {process.returncode})"
        )
    if not (layout.prepare.folder / "prepare.json").is_file() or not layout.scores.is_dir():
        raise SystemExit(f"{outdir}: `virnucpro run` stopped before prepare finished and embedding began")
    print(
        f"(prepared by `virnucpro run`, stopped as embedding began, in {time.perf_counter() - clock:.0f} s)"
    )
    track(layout.scores)
    options = EmbeddingOptions(
        dnabert_model=str(models / "dnabert-s"),
        esm_model=str(models / "esm2"),
        devices="cpu",
        workers=workers,
    )
    jobs = {kind: model_job(kind, options)[0] for kind in ("dnabert", "esm")}
    scoring = Scoring(load_classifier(str(models / "classifier"), None), layout.scores, False, "float32")
    job = EmbedJob(jobs, options.precision, options.threads_per_worker, scoring=scoring.job())
    prepared = PrepareLayout(layout.prepare.folder)
    rng = np.random.default_rng(7)
    clock = time.perf_counter()
    shards = list(zip(prepared.nucleotide_shards(), prepared.protein_shards(), strict=True))
    for nucleotide, protein in shards:
        name = nucleotide.name.split(".")[0]
        ids = [line[1:].split()[0] for line in nucleotide.read_text().splitlines() if line.startswith(">")]
        sources = {"dnabert": file_sha256(nucleotide), "esm": file_sha256(protein)}
        metadata = {
            kind: {
                **jobs[kind].recorded("n/a", "bench"),
                "source_sha256": sources[kind],
                "dim": "0",
                "rows": str(len(ids)),
            }
            for kind in jobs
        }
        virus = rng.random(len(ids), dtype=np.float32)
        path = scores_file(layout.scores, name)
        write_scores(path, ids, 1 - virus, virus, score_provenance(job.scoring.fields, metadata))
        task = ShardTask(name, (FileTask("dnabert", nucleotide, path), FileTask("esm", protein, path)), path)
        if not task.is_done(job, sources, len(ids)):
            raise SystemExit(f"{path}: the run's resume check does not take this bench-written file as done")
    print(f"(wrote {len(shards):,} scores files in {time.perf_counter() - clock:.0f} s)", flush=True)
    return prepare_seconds, sampler.peaks["prepare"]


def ratio(now: float, before: float | None) -> str:
    return f" ({now / before:.2f}x)" if before else ""


def sizes(
    reads: list[int], workdir: Path, models: Path, workers: int, bench_scores_from: int | None = None
) -> list[dict]:
    rows, previous = [], None
    for count in reads:
        inputs = workdir / f"reads-{count}.fa"
        if not inputs.exists():
            clock = time.perf_counter()
            write_reads(inputs, count)
            print(f"(generated {count:,} reads in {time.perf_counter() - clock:.0f} s)", flush=True)
        outdir = workdir / f"run-{count}"
        args = [str(inputs), "--outdir", str(outdir), "--workers", str(workers)]
        bench_scores = bench_scores_from is not None and count >= bench_scores_from
        if bench_scores:
            prepare_seconds, prepare_peak = write_bench_scores(inputs, outdir, models, workers)
        elif outdir.exists():
            args.append("--force")
        seconds, peaks, _ = run_virnucpro(args, models)
        run_json = json.loads((outdir / "run.json").read_text())
        frames = run_json["counts"]["frames"]
        rerun_seconds, rerun_peaks, _ = run_virnucpro(args[:-1] if "--force" in args else args, models)
        timings = run_json["timings"]
        if bench_scores:  # prepare ran in the stopped run (imports included); embedding never ran
            timings = {**timings, "prepare_s": prepare_seconds, "embed_and_score_s": None}
            peaks = {**peaks, "prepare": prepare_peak, "embed+score": (0, 0)}
        use = disk_use(outdir)
        row = {
            "reads": count,
            "frames": frames,
            "frames_per_read": frames / count,
            "bench_scores": bench_scores,
            "seconds": seconds,
            "stage_seconds": {k: timings.get(k) for k in ("prepare_s", "embed_and_score_s", "report_s")},
            "peaks": peaks,
            "rerun_seconds": rerun_seconds,
            "rerun_peak": max(p[0] for p in rerun_peaks.values()),
            "disk": use,
        }
        rows.append(row)
        per_m = 1e6 / frames
        print(
            f"\n## {count:,} reads: {frames:,} frames ({frames / count:.2f} per read), {seconds:.0f} s in all"
            + (" (scores written by the bench: no embedding)" if bench_scores else "")
        )
        print("| stage | seconds | s per M frames | peak RSS (tree) | peak RSS (parent) |")
        print("|---|---|---|---|---|")
        before = previous or {}
        for stage, key in (
            ("prepare", "prepare_s"),
            ("embed+score", "embed_and_score_s"),
            ("report", "report_s"),
        ):
            if timings.get(key) is None:
                print(f"| {stage} | (not run) | | | |")
                continue
            secs = timings[key]
            tree, parent = peaks.get(stage, (0, 0))
            old = before.get("stage_seconds", {}).get(key)
            old_peak = before.get("peaks", {}).get(stage, (0, 0))[0]
            label = f"{stage} (with the run's start-up)" if bench_scores and stage == "prepare" else stage
            print(
                f"| {label} | {secs:.1f}{ratio(secs, old)} | {secs * per_m:.1f} | {tree / 2**20:.0f} MB"
                f"{ratio(tree, old_peak)} | {parent / 2**20:.0f} MB |"
            )
        print(
            f"| no-op rerun | {rerun_seconds:.1f}{ratio(rerun_seconds, before.get('rerun_seconds'))} | "
            f"{rerun_seconds * per_m:.1f} | {row['rerun_peak'] / 2**20:.0f} MB | |"
        )
        print("| on disk | files | bytes | bytes per M frames |")
        print("|---|---|---|---|")
        total = 0
        for part, (files, size) in use.items():
            total += size
            old = before.get("disk", {}).get(part, (0, 0))[1] * (1e6 / before["frames"]) if before else None
            print(
                f"| {part} | {files:,} | {size / 1e6:,.1f} MB | {size * per_m / 1e6:,.1f} MB{ratio(size * per_m, old)} |"
            )
        print(f"| all (no embeddings kept) | | {total / 1e6:,.1f} MB | {total * per_m / 1e6:,.1f} MB |")
        print(
            f"| kept embeddings at the real widths (projected) | | | {REAL_WIDTH * 4:,} bytes a frame: "
            f"{REAL_WIDTH * 4 * 1e6 / 1e9:.1f} GB per M frames in float32, {REAL_WIDTH * 2 * 1e6 / 1e9:.1f} GB in float16 |"
        )
        previous = row
    return rows


def count_frames(inputs: Path, workdir: Path) -> int:
    """Frames `prepare` keeps from `inputs` (prepare alone, no models: a few seconds a million reads)."""
    outdir = workdir / f"frames-of-{inputs.stem}"
    if not (outdir / "prepare.json").exists():
        env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
        command = [sys.executable, "-m", "virnucpro", "prepare", str(inputs), "--outdir", str(outdir)]
        subprocess.run(command, env=env, check=True, capture_output=True)
    return json.loads((outdir / "prepare.json").read_text())["frames"]


def shard_series(workdir: Path, models: Path, workers: int, count: int) -> list[dict]:
    inputs = workdir / f"reads-{count}.fa"
    if not inputs.exists():
        write_reads(inputs, count)
    frames = count_frames(inputs, workdir)
    rows = []
    print(f"\n## One input ({count:,} reads, {frames:,} frames) in more and more shards: the no-op rerun")
    print(
        "| shards | frames per shard | first run s | no-op rerun s | rerun ms per shard | rerun vs the fewest shards |"
    )
    print("|---|---|---|---|---|---|")
    for target in SHARD_COUNTS:
        shard_size = -(-frames // target)
        outdir = workdir / f"shards-{shard_size}"
        args = [
            str(inputs),
            "--outdir",
            str(outdir),
            "--shard-size",
            str(shard_size),
            "--workers",
            str(workers),
        ]
        first, _, _ = run_virnucpro([*args, "--force"] if outdir.exists() else args, models)
        rerun, _, _ = run_virnucpro(args, models)
        shards = len(list((outdir / "work" / "prepare" / "shards").glob("*.nucleotide.fa")))
        rows.append({"shard_size": shard_size, "shards": shards, "first_s": first, "rerun_s": rerun})
        base = rows[0]["rerun_s"]
        print(
            f"| {shards:,} | {shard_size:,} | {first:.1f} | {rerun:.2f} | {1000 * rerun / shards:.2f} | {rerun / base:.2f}x |",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--workdir", type=Path, help="inputs and runs are kept here (default: a temporary folder)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards-only", action="store_true", help="only the shard series")
    parser.add_argument("--no-shards", action="store_true", help="no shard series")
    parser.add_argument(
        "--shard-reads", type=int, default=20_000, help="reads of the shard series' input (default 20,000)"
    )
    parser.add_argument(
        "--bench-scores-from",
        type=int,
        metavar="READS",
        help="from this many reads on, the bench writes the scores instead of embedding (see above)",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    from virnucpro.stages.make_test_models import make_test_models

    with tempfile.TemporaryDirectory(prefix="virnucpro-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        models = workdir / "models"
        if not (models / "classifier").exists():
            make_test_models(models)
        result = {}
        if not args.shards_only:
            result["sizes"] = sizes(args.reads, workdir, models, args.workers, args.bench_scores_from)
        if not args.no_shards:
            result["shards"] = shard_series(workdir, models, args.workers, args.shard_reads)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
