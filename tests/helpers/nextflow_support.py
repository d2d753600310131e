"""Running the real Nextflow engine from tests: the launcher of scripts/nextflow (bootstrapped from
Maven Central when no Nextflow is installed), the environment tasks need, and the trace file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import OUTPUTS, REPO, cli_env, run_cli
from virnucpro.files.layout import OUTDIR_MARKER

NEXTFLOW = REPO / "scripts" / "nextflow"


def nextflow_env(**extra: str) -> dict[str, str]:
    """This checkout's package first on PYTHONPATH (tasks inherit it), this interpreter's bin/ first
    on PATH so `python3` in tasks has the dependencies, plain logs, nothing fetched."""
    env = cli_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["NXF_ANSI_LOG"] = "false"
    env["NXF_OFFLINE"] = "true"
    env["NXF_DISABLE_CHECK_LATEST"] = "true"
    # The JIT's quick tier and the serial collector halve the start-up of these short runs
    env["NXF_OPTS"] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    env.update(extra)
    return env


def run_nextflow(
    *args: str | os.PathLike, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`scripts/nextflow ARGS...` launched from `cwd` (its work/ and .nextflow/ go there)."""
    return subprocess.run(
        [str(NEXTFLOW), *map(str, args)],
        cwd=cwd,
        env=env or nextflow_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_pipeline(*args: str | os.PathLike, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """`nextflow run <this checkout> ARGS...`, failing the test with the log when it fails."""
    result = run_nextflow("run", REPO, *args, cwd=cwd, **kwargs)
    if result.returncode != 0:
        log = cwd / ".nextflow.log"
        tail = log.read_text()[-6000:] if log.exists() else ""
        raise AssertionError(
            f"nextflow run {args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail}"
        )
    return result


def trace_files(outdir: Path) -> list[Path]:
    """The execution traces in pipeline_info/, oldest first (their names end with the run's start time)."""
    return sorted((outdir / "pipeline_info").glob("execution_trace_*.txt"))


def read_trace(outdir: Path) -> list[dict[str, str]]:
    """The rows of the latest run's execution trace (one per task)."""
    traces = trace_files(outdir)
    assert traces, f"no execution trace in {outdir / 'pipeline_info'}"
    with open(traces[-1], newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def statuses(trace: list[dict[str, str]]) -> dict[str, str]:
    """Task name (e.g. 'EMBED (example:1)') -> status (COMPLETED, CACHED, ...)."""
    return {row["name"]: row["status"] for row in trace}


def published_files(folder: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under `folder`."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def final_outputs(run_outdir: Path) -> dict[str, bytes]:
    """What `virnucpro run` wrote at its --outdir's top level (its intermediates stay in work/), but
    its record of them (which REPORT does not publish)."""
    return {
        path.name: path.read_bytes()
        for path in sorted(run_outdir.iterdir())
        if path.is_file() and path.name != OUTDIR_MARKER
    }


# The test profile's settings, given to `virnucpro run` for the reference outputs
TEST_PROFILE_OPTIONS = ("--chunk-size", "500", "--shard-size", "12", "--workers", "1")
# report's outputs that every sample folder holds, besides the figures
SAMPLE_FILES = tuple(name for name in OUTPUTS if not name.endswith(".png"))
# What a run publishes at the outdir's top beside one folder per sample
RUN_FILES = ("multiqc", "pipeline_info", "summary.html", "summary.json", "summary.tsv")


def outdir_entries(samples: list[str]) -> list[str]:
    return sorted([*samples, *RUN_FILES])


def run_like_the_test_profile(reads: Path, outdir: Path, models: Path, *extra: str | os.PathLike) -> Path:
    """`virnucpro run READS` with the test profile's settings and the test models (and `extra`
    options); returns outdir."""
    # Models named as Nextflow stages them (by folder name): reports show the name given
    options = [
        *("--dnabert-model", "dnabert-s", "--esm-model", "esm2", "--classifier", "classifier"),
        *TEST_PROFILE_OPTIONS,
        *extra,
        "--quiet",
    ]
    run_cli("run", reads, "--outdir", outdir, *options, check=True, cwd=models)
    return outdir


# With every sequence of the labelled set labelled virus, no call is false: the calibrated
# thresholds call every scored chunk and sequence viral, at a target FDR the few calls can meet.
CALIBRATED_TARGET_FDR = "0.5"


def make_calibration(reference: Path, folder: Path) -> Path:
    """`virnucpro calibrate` on a finished run's chunks.tsv, every sequence labelled virus but the
    first one the run calls others (a calibration needs both classes); returns calibration.json (use
    it with --target-fdr CALIBRATED_TARGET_FDR: at it every scored chunk is called virus)."""
    folder.mkdir(parents=True)
    rows = [line.split("\t") for line in (reference / "sequences.tsv").read_text().splitlines()]
    call = rows[0].index("call")
    other = next(row[0] for row in rows[1:] if row[call] == "others")
    labels = folder / "labels.tsv"
    labels.write_text(
        "sequence_id\tlabel\n"
        + "".join(f"{row[0]}\t{'others' if row[0] == other else 'virus'}\n" for row in rows[1:])
    )
    calibration = folder / "calibration"
    run_cli(
        "calibrate",
        "--chunks",
        reference / "chunks.tsv",
        "--labels",
        labels,
        "--outdir",
        calibration,
        "--quiet",
        check=True,
    )
    return calibration / "calibration.json"


def assert_same_outputs(sample_folder: Path, reference: Path, besides: str | None = None) -> None:
    """Byte-identical to `virnucpro run`'s outputs, except run.json (timings, Nextflow's metadata);
    files under the subfolder `besides` are left to the caller."""
    published = {
        name: content
        for name, content in published_files(sample_folder).items()
        if besides is None or not name.startswith(f"{besides}/")
    }
    expected = final_outputs(reference)
    assert sorted(published) == sorted(expected)
    assert set(SAMPLE_FILES) <= set(published)
    for name, content in expected.items():
        if name != "run.json":
            assert published[name] == content, f"{name} differs from virnucpro run's"
    json.loads(published["run.json"])


def fasta_records(path: Path) -> list[tuple[str, str]]:
    """(header line, sequence lines) of every FASTA record."""
    text = path.read_text()
    return [
        (block.split("\n", 1)[0], block.split("\n", 1)[1] if "\n" in block else "")
        for block in text.split(">")[1:]
    ]


def write_records(path: Path, records: list[tuple[str, str]]) -> list[str]:
    """Write the records as FASTA; returns their sequence ids."""
    path.write_text("".join(f">{header}\n{sequence}" for header, sequence in records))
    return [header.split()[0] for header, _ in records]


def _sequence_id(frame_id: str) -> str:
    return frame_id.rsplit("_chunk_", 1)[0]


def _scores(path: Path) -> dict[str, tuple[str, float, float]]:
    """prediction_results.txt: frame id -> (prediction, score1, score2)."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {row[0]: (row[1], float(row[2]), float(row[3])) for row in rows}


def assert_scores_match(sample_folder: Path, reference: Path, sequence_ids: list[str]) -> None:
    """The sample scored exactly its own sequences' frames, in the order of `sequence_ids`, with the
    reference's calls and scores.
    Shards of another size batch other frames together, which moves float32 scores in the last
    digits, so scores are compared within 1e-5."""
    got = _scores(sample_folder / "prediction_results.txt")
    # in the sample's input order (sequence_ids), each sequence's frames in the reference's order
    reference_scores = _scores(reference / "prediction_results.txt")
    expected = {
        frame: reference_scores[frame]
        for sequence in sequence_ids
        for frame in reference_scores
        if _sequence_id(frame) == sequence
    }
    assert list(got) == list(expected)
    assert expected
    for frame, (call, others, virus) in got.items():
        assert call == expected[frame][0], frame
        assert abs(others - expected[frame][1]) <= 1e-5, frame
        assert abs(virus - expected[frame][2]) <= 1e-5, frame
    sequences = (sample_folder / "sequences.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in sequences[1:]] == sequence_ids


# A stand-in for docker, podman, singularity and apptainer: records how Nextflow called it, then
# runs the task's command (everything after the image name) on this machine. FAKE_ENGINE_KILL_ONCE
# names a task whose first attempt ends as if killed for memory (exit 137). The settings are
# written into the script: Nextflow starts singularity and apptainer with an emptied environment.
FAKE_ENGINE = r"""#!/usr/bin/env bash
FAKE_ENGINE_LOG='{log}'
FAKE_ENGINE_IMAGE='{image}'
FAKE_ENGINE_KILL_ONCE='{kill_once}'
engine="$(basename "$0")"
arguments="$*"
printf '%s\t%s\t%s\n' "$engine" "$(sed -n "s/^### name: '\(.*\)'$/\1/p" .command.run 2>/dev/null)" "${arguments//$'\n'/ }" >> "$FAKE_ENGINE_LOG"
case "$1" in
    run | exec) ;;
    pull) while [[ $# -gt 0 && "$1" != --name ]]; do shift; done; touch "$2"; exit 0 ;;
    *) exit 0 ;;
esac
while [[ $# -gt 0 && "$1" != "$FAKE_ENGINE_IMAGE" && "$1" != *"/$FAKE_ENGINE_IMAGE"* && "$1" != *"${FAKE_ENGINE_IMAGE//:/-}"* ]]; do shift; done
shift
name="$(sed -n "s/^### name: '\(.*\)'$/\1/p" .command.run)"
if [[ -n "$FAKE_ENGINE_KILL_ONCE" && "$name" == "$FAKE_ENGINE_KILL_ONCE" && ! -e "$FAKE_ENGINE_LOG.killed" ]]; then
    touch "$FAKE_ENGINE_LOG.killed"
    exit 137
fi
exec "$@"
"""


def fake_container_engines(folder: Path, log: Path, image: str, kill_once: str = "") -> Path:
    """A folder to put first on PATH, holding the fake engines; they record their calls in `log`."""
    folder.mkdir(parents=True, exist_ok=True)
    for engine in ("docker", "podman", "singularity", "apptainer"):
        script = folder / engine
        script.write_text(
            FAKE_ENGINE.replace("{log}", str(log)).replace("{image}", image).replace("{kill_once}", kill_once)
        )
        script.chmod(0o755)
    return folder


def engine_calls(log: Path) -> dict[str, list[tuple[str, str]]]:
    """Task name -> [(engine, arguments)] of every `run`/`exec` call the fake engines recorded."""
    calls: dict[str, list[tuple[str, str]]] = {}
    for line in log.read_text().splitlines():
        engine, task, arguments = line.split("\t", 2)
        if arguments.split(" ", 1)[0] in ("run", "exec"):
            calls.setdefault(task, []).append((engine, arguments))
    return calls
